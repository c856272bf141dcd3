package e2e

import (
	"context"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pmetric"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv"
)

// scopeName is the instrumentation scope of the receiver's metrics (metadata.yaml).
const scopeName = "github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver"

// wantOTLPPoint is the hypervisor point OTLP backends receive for a VMI on node.
func wantOTLPPoint(hypervisorType, ns, name string, retracted bool) otlpPoint {
	value := int64(1)
	if retracted {
		value = 0
	}
	return otlpPoint{
		Resource: map[string]any{"k8s.node.name": node},
		Scope:    scopeName,
		Unit:     "",
		Type:     pmetric.MetricTypeGauge,
		Value:    value,
		Attributes: map[string]any{
			"namespace":       ns,
			"name":            name,
			"node":            node,
			"hypervisor_type": hypervisorType,
		},
		Retracted: retracted,
	}
}

// TestOTLPOverlayExportsToSecondCollector runs the collector with its shipped config
// plus the shipped OTLP overlay, exporting to an instance of the test distribution that
// writes what it receives to a file, and checks every part of what arrives: the point
// of each running VMI, then the retraction of a stopped one, alone (the receiver sends
// what changed).
func TestOTLPOverlayExportsToSecondCollector(t *testing.T) {
	bin := collectorBinary(t)
	l := newLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	s := startSink(ctx, t)
	wantMyVM := l.runTCG(ctx, t, "default", "my-vm")
	wantDB := l.runTCG(ctx, t, "prod", "db")

	col := startCollectorWith(ctx, t, testenv.CollectorOptions{
		Bin:          bin,
		ExtraConfigs: []string{repoFile(t, "cmd/otelcol-kubevirt/otlp.yaml")},
		Env:          append(l.collectorEnv(), "OTLP_ENDPOINT="+s.Endpoint, "OTLP_INSECURE=true"),
	})
	// The overlay leaves the Prometheus endpoint as it is.
	waitForLines(ctx, t, col, wantMyVM, wantDB)
	checkExposition(ctx, t, col)

	waitForPoints(ctx, t, s, "both VMIs' points", wantOTLPPoint("qemu-tcg", "default", "my-vm", false), wantOTLPPoint("qemu-tcg", "prod", "db", false))
	// What went through OTLP renders as the same lines on the far side.
	waitForLines(ctx, t, s.col, wantMyVM, wantDB)

	if err := l.api.SetVMIStatus(ctx, "default", "my-vm", testenv.VMIStatus{Phase: "Succeeded", NodeName: node}); err != nil {
		t.Fatal(err)
	}
	// The removal reaches OTLP backends as a point flagged NoRecordedValue: the OTLP
	// form of a Prometheus staleness marker.
	waitForBatch(ctx, t, s, "the stopped VMI's retraction in a batch of its own", func(b batch) bool {
		return sameBatch(b, wantOTLPPoint("qemu-tcg", "default", "my-vm", true))
	})
	waitForLines(ctx, t, col, wantDB)
	waitForLines(ctx, t, s.col, wantDB)
}

// waitForBatch polls the sink until one received batch satisfies match.
func waitForBatch(ctx context.Context, t *testing.T, s *sink, what string, match func(batch) bool) batch {
	t.Helper()
	var got []batch
	var found batch
	err := wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, func(context.Context) (bool, error) {
		got = batches(s.requests(t))
		i := slices.IndexFunc(got, match)
		if i >= 0 {
			found = got[i]
		}
		return i >= 0, nil
	})
	if err != nil {
		var b strings.Builder
		for _, g := range got {
			b.WriteString("\n")
			for _, p := range g {
				b.WriteString("  " + strings.TrimSpace(pretty(p)) + "\n")
			}
		}
		t.Fatalf("the sink never received %s; it received %d batches:%s", what, len(got), b.String())
	}
	return found
}

// waitForPoints polls the sink until every point of want has arrived, in any batches.
func waitForPoints(ctx context.Context, t *testing.T, s *sink, what string, want ...otlpPoint) {
	t.Helper()
	var got []otlpPoint
	err := wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, func(context.Context) (bool, error) {
		got = got[:0]
		for _, b := range batches(s.requests(t)) {
			got = append(got, b...)
		}
		for _, w := range want {
			if !slices.ContainsFunc(got, func(p otlpPoint) bool { return sameBatch(batch{p}, w) }) {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		var b strings.Builder
		for _, p := range got {
			b.WriteString("\n  " + strings.TrimSpace(pretty(p)))
		}
		t.Fatalf("the sink never received %s; it received:%s", what, b.String())
	}
}

// sameBatch reports whether b holds exactly want, in any order. Descriptions are only
// required to be there: their wording belongs to metadata.yaml.
func sameBatch(b batch, want ...otlpPoint) bool {
	if len(b) != len(want) {
		return false
	}
	got := make([]otlpPoint, len(b))
	for i, p := range b {
		if p.Description == "" {
			return false
		}
		p.Description = ""
		got[i] = p
	}
	for _, w := range want {
		i := slices.IndexFunc(got, func(p otlpPoint) bool { return reflect.DeepEqual(p, w) })
		if i < 0 {
			return false
		}
		got = slices.Delete(got, i, i+1)
	}
	return true
}

func pretty(p otlpPoint) string {
	return strings.Join([]string{
		"resource=" + fmtAny(p.Resource), "scope=" + p.Scope, "type=" + p.Type.String(),
		"unit=" + p.Unit, "value=" + fmtAny(p.Value), "attributes=" + fmtAny(p.Attributes),
		"retracted=" + fmtAny(p.Retracted), "description=" + p.Description,
	}, " ")
}
