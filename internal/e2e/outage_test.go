package e2e

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv"
)

// TestUnreachableAPIServerShowsInLogAndOnEndpoint is the README's troubleshooting as a
// user meets it: the built collector with its shipped configuration, whose API server
// refuses connections. Within seconds its log says so and its endpoint serves the
// watch as not synced, with the failures by reason; once the API server is back, both
// say so too.
func TestUnreachableAPIServerShowsInLogAndOnEndpoint(t *testing.T) {
	bin := collectorBinary(t)
	api := testenv.MustStartAPIServer(t)
	lv := testenv.MustStartLibvirtd(t, testenv.LibvirtdOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := api.StopKubeAPIServer(); err != nil {
		t.Fatal(err)
	}

	started := time.Now()
	col := startCollector(ctx, t, bin, api, lv)
	waitForLog(ctx, t, col, 5*time.Second, "Watching VirtualMachineInstances failed; retrying", `"reason": "unreachable"`, "connection refused")
	waitForLines(ctx, t, col) // nothing to report, and nothing wrong reported
	waitForSample(ctx, t, col, 5*time.Second, "kubevirt_vmi_hypervisor_watch_synced 0")
	waitForSample(ctx, t, col, 5*time.Second, `kubevirt_vmi_hypervisor_watch_failures_total{reason="unreachable"}`)
	t.Logf("log line and metrics %v after the collector started", time.Since(started).Round(time.Millisecond))
	body, err := col.Scrape(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if out := promtoolCheckMetrics(t, body); out != "" {
		t.Errorf("promtool check metrics reports:\n%s\non:\n%s", out, body)
	}

	if err := api.StartKubeAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	// The watch retries with a backoff that has grown meanwhile (seconds).
	waitForSample(ctx, t, col, time.Minute, "kubevirt_vmi_hypervisor_watch_synced 1")
	waitForSample(ctx, t, col, 5*time.Second, "kubevirt_vmi_hypervisor_watch_staleness_seconds 0")
	waitForLog(ctx, t, col, 5*time.Second, "Watching VirtualMachineInstances again")
}

// waitForLog polls the collector's log until one of its lines holds every part.
func waitForLog(ctx context.Context, t *testing.T, col *testenv.Collector, within time.Duration, parts ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	err := wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, func(context.Context) (bool, error) {
		b, err := os.ReadFile(col.LogPath)
		if err != nil {
			return false, err
		}
	lines:
		for _, l := range strings.Split(string(b), "\n") {
			for _, p := range parts {
				if !strings.Contains(l, p) {
					continue lines
				}
			}
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("no log line with %q within %v", parts, within)
	}
}

// waitForSample polls the endpoint until it serves the sample line want, or, when want
// has no value, a line of the series want with any value.
func waitForSample(ctx context.Context, t *testing.T, col *testenv.Collector, within time.Duration, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	var body string
	err := wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, func(context.Context) (bool, error) {
		var err error
		body, err = col.Scrape(ctx)
		if err != nil {
			return false, nil
		}
		for _, l := range strings.Split(body, "\n") {
			if l == want || strings.HasPrefix(l, want+" ") {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("endpoint served no %q within %v:\n%s", want, within, body)
	}
}
