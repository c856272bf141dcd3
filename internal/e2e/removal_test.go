package e2e

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv"
)

// removalBudget is how long a removed series may stay on the Prometheus endpoint after
// the Kubernetes change that removes it.
const removalBudget = time.Second

// TestRemovalLatency measures, through the built collector with its shipped config,
// the time from a VMI change in the API server to its line leaving the endpoint, for
// every way a VMI stops being reported, and holds each to removalBudget.
func TestRemovalLatency(t *testing.T) {
	bin := collectorBinary(t)
	l := newLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	names := []string{"stops", "deleted", "fails", "migrates"}
	var want []string
	for _, name := range names {
		want = append(want, l.runTCG(ctx, t, "default", name))
	}
	col := startCollectorWith(ctx, t, testenv.CollectorOptions{Bin: bin, Env: l.collectorEnv()})
	waitForLines(ctx, t, col, want...)

	removals := []struct {
		name, how string
		do        func() error
	}{
		{"stops", "phase Succeeded", func() error {
			return l.api.SetVMIStatus(ctx, "default", "stops", testenv.VMIStatus{Phase: "Succeeded", NodeName: node})
		}},
		{"deleted", "VMI deleted", func() error { return l.api.DeleteVMI(ctx, "default", "deleted") }},
		{"fails", "phase Failed", func() error {
			return l.api.SetVMIStatus(ctx, "default", "fails", testenv.VMIStatus{Phase: "Failed", NodeName: node})
		}},
		{"migrates", "moved to another node", func() error {
			return l.api.SetVMIStatus(ctx, "default", "migrates", testenv.VMIStatus{Phase: "Running", NodeName: "worker-node-2"})
		}},
	}
	var worst time.Duration
	for _, r := range removals {
		gone := line("qemu-tcg", "default", r.name)
		// The clock starts before the API call, so the figure includes the write itself.
		start := time.Now()
		if err := r.do(); err != nil {
			t.Fatal(err)
		}
		took := waitUntilGone(ctx, t, col, start, gone)
		t.Logf("removal latency, %s: %v (API change -> line gone from the endpoint)", r.how, took.Round(time.Millisecond))
		worst = max(worst, took)
		if took > removalBudget {
			t.Errorf("%s: line served %v after the change, budget %v", r.how, took, removalBudget)
		}
		// Nothing else went with it.
		want = slices.DeleteFunc(want, func(l string) bool { return l == gone })
		waitForLines(ctx, t, col, want...)
	}
	t.Logf("removal latency: worst %v of %d removals (budget %v)", worst.Round(time.Millisecond), len(removals), removalBudget)
}
