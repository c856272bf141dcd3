package bench

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// steadyVMIs is how many Running VMIs the CPU and scrape benchmarks give the collector.
const steadyVMIs = 1000

// steadyWindow is how long the CPU benchmarks measure: BENCH_WINDOW (a Go duration),
// default 60s. The 5-minute figures in docs/benchmarks.md are BENCH_WINDOW=5m.
func steadyWindow() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("BENCH_WINDOW")); err == nil && d > 0 {
		return d
	}
	return 60 * time.Second
}

// steadyCollector returns the built collector with the shipped configuration watching
// a node with steadyVMIs Running VMIs, each a running test-driver domain, once every
// series is on its endpoint.
func steadyCollector(b *testing.B) (*cluster, *collector) {
	c := sharedCluster(b)
	uri := testDriverWith(b, "cpu", steadyVMIs)
	vmisFixture.get(b, "cpu", func() (struct{}, error) {
		return struct{}{}, c.createVMIs(context.Background(), "cpu", 0, steadyVMIs, "node-cpu", "Running")
	})
	col := collectorFor(b, "cpu", func() (*collector, error) { return startCollector(c, "node-cpu", uri) })
	waitSeries(b, col, steadyVMIs)
	return c, col
}

// waitSeries waits until the endpoint shows n hypervisor lines.
func waitSeries(b *testing.B, col *collector, n int) {
	b.Helper()
	var got int
	waitFor(b, fmt.Sprintf("%d lines on the endpoint", n), 2*time.Minute, func() bool {
		body, err := col.Scrape(context.Background())
		got = countLines(body, "kubevirt_vmi_hypervisor_info{")
		return err == nil && got == n
	})
}

// BenchmarkCPU measures the collector process's CPU (all threads, user and system)
// with the shipped configuration and 1000 Running VMIs, in percent of one core, over
// steadyWindow:
//
//   - steady: nothing changes and nobody scrapes; what remains is the receiver's
//     emission of every series every collection_interval (30s), libvirt and API server
//     keepalives, and the Go runtime;
//   - steady-scraped-15s: the same with a scrape every 15 s, Prometheus' default;
//   - transitions-50/s: VMIs leave and re-enter Running at 50 a second (each one
//     update in the API server, a detection and an emission of what changed); the
//     endpoint must agree with the API server afterwards.
//
// Each also reports the collector's resident memory at its end (see BenchmarkRSS).
// Run with -benchtime=1x.
func BenchmarkCPU(b *testing.B) {
	b.Run("steady", func(b *testing.B) {
		_, col := steadyCollector(b)
		measureCPU(b, col, steadyWindow(), func(time.Time) {})
	})
	b.Run("steady-scraped-15s", func(b *testing.B) {
		_, col := steadyCollector(b)
		next := time.Now()
		measureCPU(b, col, steadyWindow(), func(now time.Time) {
			if now.Before(next) {
				return
			}
			if _, err := col.Scrape(context.Background()); err != nil {
				b.Fatal(err)
			}
			next = now.Add(15 * time.Second)
		})
	})
	b.Run("transitions-50/s", func(b *testing.B) {
		c, col := steadyCollector(b)
		ctx := context.Background()
		running := make([]bool, steadyVMIs)
		for i := range running {
			running[i] = true
		}
		var flips, k int
		start := time.Now()
		measureCPU(b, col, steadyWindow(), func(now time.Time) {
			// Catch up to 50 a second since start, however long the patches took.
			for ; float64(flips) < 50*now.Sub(start).Seconds(); flips++ {
				ns, name := setVMI("cpu", k)
				phase := map[bool]string{true: "Succeeded", false: "Running"}[running[k]]
				if err := c.setPhase(ctx, ns, name, phase); err != nil {
					b.Fatal(err)
				}
				running[k] = !running[k]
				k = (k + 1) % steadyVMIs
			}
		})
		b.ReportMetric(float64(flips)/time.Since(start).Seconds(), "transitions/s")
		// The endpoint agrees with the API server, then everything runs again.
		n := 0
		for _, r := range running {
			if r {
				n++
			}
		}
		waitSeries(b, col, n)
		for i, r := range running {
			if !r {
				ns, name := setVMI("cpu", i)
				if err := c.setPhase(ctx, ns, name, "Running"); err != nil {
					b.Fatal(err)
				}
			}
		}
		waitSeries(b, col, steadyVMIs)
	})
}

// measureCPU reports the collector's CPU over window, in percent of one core, calling
// tick every 20 ms meanwhile (to drive load; the ticks are not synchronisation).
func measureCPU(b *testing.B, col *collector, window time.Duration, tick func(now time.Time)) {
	b.Helper()
	for range b.N {
		cpu0, err := cpuTime(col.pid)
		if err != nil {
			b.Fatal(err)
		}
		ticks0, err := cpuTimeTicks(col.pid)
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		ticker := time.NewTicker(20 * time.Millisecond)
		for now := range ticker.C {
			if now.Sub(start) >= window {
				break
			}
			tick(now)
		}
		ticker.Stop()
		elapsed := time.Since(start)
		cpu1, err := cpuTime(col.pid)
		if err != nil {
			b.Fatal(err)
		}
		ticks1, err := cpuTimeTicks(col.pid)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(100*float64(cpu1-cpu0)/float64(elapsed), "cpu-%")
		b.ReportMetric(100*float64(ticks1-ticks0)/float64(elapsed), "cpu-ticks-%")
		b.ReportMetric(elapsed.Seconds(), "window-s")
		reportRSS(b, col.pid, "")
	}
}

// BenchmarkRSS measures the resident memory of the collector process with the shipped
// configuration: with 1000 Running VMIs (vmis=1000, once every series is out and 10 s
// later), and with none (vmis=0: a node without VMIs, the cost of the binary and its
// libraries before any VMI). rss-MB is VmRSS, the sum of rss-anon-MB (heap, stacks,
// runtime) and rss-file-MB (pages of the executable and of the shared libraries, libvirt's
// among them, that are mapped in). Run with -benchtime=1x.
func BenchmarkRSS(b *testing.B) {
	b.Run("vmis=1000", func(b *testing.B) {
		_, col := steadyCollector(b)
		for range b.N {
			<-time.After(10 * time.Second) // let the start-up burst's garbage go
			reportRSS(b, col.pid, "")
		}
	})
	b.Run("vmis=0", func(b *testing.B) {
		c := sharedCluster(b)
		uri := testDriverWith(b, "cpu", steadyVMIs)
		col := collectorFor(b, "empty", func() (*collector, error) { return startCollector(c, "node-without-vmis", uri) })
		waitFor(b, "the watch to be synced", time.Minute, func() bool {
			body, err := col.Scrape(context.Background())
			return err == nil && strings.Contains(body, "kubevirt_vmi_hypervisor_watch_synced 1\n")
		})
		for range b.N {
			<-time.After(10 * time.Second)
			reportRSS(b, col.pid, "")
		}
	})
}

// reportRSS reports the process's VmRSS, RssAnon and RssFile in MB (10^6 bytes), each
// name prefixed with prefix.
func reportRSS(b *testing.B, pid int, prefix string) {
	b.Helper()
	status, err := procStatus(pid)
	if err != nil {
		b.Fatal(err)
	}
	for _, f := range []struct{ field, metric string }{{"VmRSS", "rss-MB"}, {"RssAnon", "rss-anon-MB"}, {"RssFile", "rss-file-MB"}} {
		b.ReportMetric(float64(status[f.field])/1e6, prefix+f.metric)
	}
}

// BenchmarkScrape measures one scrape of the endpoint with 1000 hypervisor series (and
// the self-metrics): wall time as the scraper sees it, the collector's CPU per scrape,
// and the body's size. Run with -benchtime=200x or more.
func BenchmarkScrape(b *testing.B) {
	_, col := steadyCollector(b)
	ctx := context.Background()
	var wall latencies
	var size int
	cpu0, err := cpuTime(col.pid)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		body, err := col.Scrape(ctx)
		wall = append(wall, time.Since(start))
		if err != nil {
			b.Fatal(err)
		}
		if n := countLines(body, "kubevirt_vmi_hypervisor_info{"); n != steadyVMIs {
			b.Fatalf("scrape has %d series, want %d", n, steadyVMIs)
		}
		size = len(body)
	}
	b.StopTimer()
	cpu1, err := cpuTime(col.pid)
	if err != nil {
		b.Fatal(err)
	}
	wall.report(b, "", time.Millisecond)
	b.ReportMetric(float64(cpu1-cpu0)/float64(b.N)/float64(time.Millisecond), "collector-cpu-ms/scrape")
	b.ReportMetric(float64(size), "bytes/scrape")
}
