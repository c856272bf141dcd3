package e2e

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv"
)

// TestSeedsPromQLOnDetectionMetrics runs the seeds' self-monitoring queries in a real
// Prometheus scraping the collector's one endpoint: the detection-duration histogram's
// p95, and the failure counter by reason.
func TestSeedsPromQLOnDetectionMetrics(t *testing.T) {
	bin := collectorBinary(t)
	l := newLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	col := startCollectorWith(ctx, t, testenv.CollectorOptions{Bin: bin, Env: l.collectorEnv()})
	prom := startPrometheus(ctx, t, strings.TrimPrefix(strings.TrimSuffix(col.MetricsURL, "/metrics"), "http://"))

	// A rate needs detections between two scrapes: one VMI before Prometheus has seen
	// the histogram, one after.
	waitForLines(ctx, t, col, l.runTCG(ctx, t, "default", "first"))
	waitForSamples(ctx, t, prom, "kubevirt_vmi_hypervisor_detection_duration_seconds_count", func(v float64) bool { return v >= 1 })
	waitForLines(ctx, t, col, line("qemu-tcg", "default", "first"), l.runTCG(ctx, t, "default", "second"))

	const p95 = `histogram_quantile(0.95, rate(kubevirt_vmi_hypervisor_detection_duration_seconds_bucket[5m]))`
	got := waitForSamples(ctx, t, prom, p95, func(v float64) bool { return !math.IsNaN(v) && v > 0 })
	t.Logf("%s = %.4fs", p95, got)

	// A Running VMI whose domain does not exist counts as domain_missing. The counter
	// goes out within a second of changing, with no series changing.
	runVMI(ctx, t, l.api, "default", "no-domain")
	waitForSamples(ctx, t, prom, `kubevirt_vmi_hypervisor_detection_failures_total{reason="domain_missing"}`, func(v float64) bool { return v >= 1 })
}

// waitForSamples polls promql until it returns one sample whose value satisfies ok, and
// returns that value.
func waitForSamples(ctx context.Context, t *testing.T, prom *testenv.Prometheus, promql string, ok func(float64) bool) float64 {
	t.Helper()
	var last []testenv.Sample
	var value float64
	err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(context.Context) (bool, error) {
		samples, err := prom.Query(ctx, promql)
		if err != nil {
			return false, nil
		}
		last = samples
		if len(samples) == 1 && ok(samples[0].Value) {
			value = samples[0].Value
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("query %s: last result %+v", promql, last)
	}
	return value
}
