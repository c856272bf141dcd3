package e2e

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv"
)

// scrapeInterval is the test Prometheus's scrape interval.
const scrapeInterval = time.Second

// staleSlack is what a stale marker may take beyond one scrape interval to show in a
// query: the scrape itself, the query and the polling.
const staleSlack = 300 * time.Millisecond

// TestPrometheusScrapesExactSeriesAndMarksRemovedOnesStale has a real Prometheus scrape
// the collector (shipped config): an instant query returns exactly the running VMIs'
// series, with no labels but the metric's own and the target's job and instance; once
// a VMI stops, the query stops returning it within one scrape interval of the line
// leaving the endpoint, because Prometheus writes a staleness marker for a series that
// is missing from a scrape.
func TestPrometheusScrapesExactSeriesAndMarksRemovedOnesStale(t *testing.T) {
	bin := collectorBinary(t)
	l := newLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	wantMyVM := l.runTCG(ctx, t, "default", "my-vm")
	wantLegacy := l.runTCG(ctx, t, "legacy", "emulated-vm")
	col := startCollectorWith(ctx, t, testenv.CollectorOptions{Bin: bin, Env: l.collectorEnv()})
	waitForLines(ctx, t, col, wantMyVM, wantLegacy)

	target := strings.TrimSuffix(strings.TrimPrefix(col.MetricsURL, "http://"), "/metrics")
	prom := startPrometheus(ctx, t, target)
	series := func(ns, name string) map[string]string {
		return map[string]string{
			"__name__": metric, "hypervisor_type": "qemu-tcg", "namespace": ns, "name": name, "node": node,
			// Prometheus's own target labels; the exporter adds none.
			"job": "otelcol-kubevirt", "instance": target,
		}
	}
	waitForQuery(ctx, t, prom, metric, series("default", "my-vm"), series("legacy", "emulated-vm"))

	start := time.Now()
	if err := l.api.SetVMIStatus(ctx, "default", "my-vm", testenv.VMIStatus{Phase: "Succeeded", NodeName: node}); err != nil {
		t.Fatal(err)
	}
	gone := waitUntilGone(ctx, t, col, start, wantMyVM)
	// Without a staleness marker the series would be returned for the 5m lookback.
	staleCtx, staleCancel := context.WithTimeout(ctx, giveUp)
	defer staleCancel()
	waitForQuery(staleCtx, t, prom, metric+`{name="my-vm"}`)
	stale := time.Since(start)
	t.Logf("VMI stopped -> line gone from the endpoint %v -> query empty %v (scrape interval %v)",
		gone.Round(time.Millisecond), stale.Round(time.Millisecond), scrapeInterval)
	if stale-gone > scrapeInterval+staleSlack {
		t.Errorf("query still returned the stopped VMI %v after the endpoint dropped it; want within one scrape interval (%v, +%v slack)",
			stale-gone, scrapeInterval, staleSlack)
	}
	waitForQuery(ctx, t, prom, metric, series("legacy", "emulated-vm"))
}

func startPrometheus(ctx context.Context, t *testing.T, targets ...string) *testenv.Prometheus {
	t.Helper()
	dir := t.TempDir()
	prom, err := testenv.StartPrometheus(ctx, testenv.PrometheusOptions{Dir: dir, Targets: targets, ScrapeInterval: scrapeInterval})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := prom.Stop(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			b, _ := os.ReadFile(prom.LogPath)
			t.Logf("prometheus log:\n%s", b)
		}
	})
	return prom
}

// waitForQuery polls an instant query until its result is exactly the series want
// (label sets), each with value 1.
func waitForQuery(ctx context.Context, t *testing.T, prom *testenv.Prometheus, promql string, want ...map[string]string) {
	t.Helper()
	wantKeys := make([]string, len(want))
	for i, w := range want {
		wantKeys[i] = labelsKey(w)
	}
	slices.Sort(wantKeys)
	var got []string
	var lastErr error
	err := wait.PollUntilContextCancel(ctx, 20*time.Millisecond, true, func(context.Context) (bool, error) {
		samples, err := prom.Query(ctx, promql)
		if lastErr = err; err != nil {
			return false, nil
		}
		got = got[:0]
		for _, s := range samples {
			got = append(got, labelsKey(s.Labels)+fmt.Sprintf(" = %g", s.Value))
		}
		slices.Sort(got)
		return slices.EqualFunc(got, wantKeys, func(g, w string) bool { return g == w+" = 1" }), nil
	})
	if err != nil {
		t.Fatalf("query %s returned\n%s\nwant (each = 1)\n%s\n(last error: %v)", promql, strings.Join(got, "\n"), strings.Join(wantKeys, "\n"), lastErr)
	}
}

func labelsKey(labels map[string]string) string {
	var b strings.Builder
	b.WriteString("{")
	for i, k := range slices.Sorted(maps.Keys(labels)) {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, "%s=%q", k, labels[k])
	}
	b.WriteString("}")
	return b.String()
}
