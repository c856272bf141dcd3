package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/launcher"
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

// idleWindow is how long the steady benchmarks measure: steadyWindow, but at least
// the shipped collection_interval, so that the window holds its share of the full
// emissions that are most of what an idle collector does.
func idleWindow(b *testing.B) time.Duration {
	b.Helper()
	interval, err := shippedCollectionInterval()
	if err != nil {
		b.Fatal(err)
	}
	return max(steadyWindow(), interval)
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
//     emission of every series every collection_interval (so the window is at least
//     that long, see idleWindow), libvirt and API server keepalives, and the Go
//     runtime;
//   - steady-scraped-15s: the same with a scrape every 15 s, Prometheus' default;
//   - transitions-50/s: VMIs leave and re-enter Running at 50 a second (each one
//     update in the API server, a detection and an emission of what changed); the
//     endpoint must agree with the API server afterwards;
//   - transitions-50/s-watch-only: the same transitions, measured in a process that
//     only watches the node's VMIs (internal/vmi's watcher, as the receiver runs it,
//     see runWatchOnly): what the watch alone costs, a bound on the first.
//
// Each also reports the collector's resident memory at its end (see BenchmarkRSS).
// Run with -benchtime=1x.
func BenchmarkCPU(b *testing.B) {
	b.Run("steady", func(b *testing.B) {
		_, col := steadyCollector(b)
		measureCPU(b, col.pid, idleWindow(b), func(time.Time) {})
	})
	b.Run("steady-scraped-15s", func(b *testing.B) {
		_, col := steadyCollector(b)
		next := time.Now()
		measureCPU(b, col.pid, idleWindow(b), func(now time.Time) {
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
		running := transitions(b, c, col.pid)
		// The endpoint agrees with the API server, then everything runs again.
		waitSeries(b, col, running)
		runAll(b, c)
		waitSeries(b, col, steadyVMIs)
	})
	b.Run("transitions-50/s-watch-only", func(b *testing.B) {
		c, _ := steadyCollector(b)
		w, err := startWatchOnly(c, "node-cpu")
		if err != nil {
			b.Fatal(err)
		}
		defer w.stop()
		transitions(b, c, w.cmd.Process.Pid)
		runAll(b, c)
	})
}

// transitions flips the steady VMIs between Running and Succeeded at 50 a second,
// one after the other, for steadyWindow, and reports the CPU of process pid meanwhile.
// It returns how many of them are Running at the end.
func transitions(b *testing.B, c *cluster, pid int) int {
	b.Helper()
	ctx := context.Background()
	running := make([]bool, steadyVMIs)
	for i := range running {
		running[i] = true
	}
	var flips, k int
	start := time.Now()
	measureCPU(b, pid, steadyWindow(), func(now time.Time) {
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
	n := 0
	for _, r := range running {
		if r {
			n++
		}
	}
	return n
}

// runAll puts every steady VMI back to Running.
func runAll(b *testing.B, c *cluster) {
	b.Helper()
	for i := range steadyVMIs {
		ns, name := setVMI("cpu", i)
		if err := c.setPhase(context.Background(), ns, name, "Running"); err != nil {
			b.Fatal(err)
		}
	}
}

// measureCPU reports the CPU of process pid over window, in percent of one core, and
// its resident memory at the end, calling tick every 20 ms meanwhile (to drive load;
// the ticks are not synchronisation).
func measureCPU(b *testing.B, pid int, window time.Duration, tick func(now time.Time)) {
	b.Helper()
	for range b.N {
		cpu0, err := cpuTime(pid)
		if err != nil {
			b.Fatal(err)
		}
		ticks0, err := cpuTimeTicks(pid)
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
		cpu1, err := cpuTime(pid)
		if err != nil {
			b.Fatal(err)
		}
		ticks1, err := cpuTimeTicks(pid)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(100*float64(cpu1-cpu0)/float64(elapsed), "cpu-%")
		b.ReportMetric(100*float64(ticks1-ticks0)/float64(elapsed), "cpu-ticks-%")
		b.ReportMetric(elapsed.Seconds(), "window-s")
		reportRSS(b, pid, "")
	}
}

// BenchmarkRSS measures the resident memory of the collector process with the shipped
// configuration, reading VMIs the way it does by default (libvirt.source launcher):
// each VMI's launcher pod in a kubelet-style pods directory holds the status file
// libvirt keeps for its running domain, and nothing else, so the collector needs no
// libvirt and holds none in its memory (the test driver of BenchmarkCPU lives in the
// collector's process, its domains in the C heap). vmis=1000 is measured 10 s after
// every series is out; vmis=0 (the same pods directory, a node without VMIs) is what the
// binary and its libraries cost before any VMI. The collector runs from a copy of the
// built binary: how many of an executable's pages end up resident depends on how the
// file sits in the page cache, and a file the linker has just written maps in far more
// than a copy (docs/benchmarks.md), which would measure the build, not the collector. rss-MB is VmRSS, the sum of
// rss-anon-MB (Go heap, stacks, C allocations) and rss-file-MB (pages of the
// executable and of the shared libraries, libvirt's among them, that are mapped in).
// Run with -benchtime=1x.
func BenchmarkRSS(b *testing.B) {
	for _, n := range []int{steadyVMIs, 0} {
		b.Run(fmt.Sprintf("vmis=%d", n), func(b *testing.B) {
			c := sharedCluster(b)
			pods := launcherNodeWith(b, c, steadyVMIs)
			node := map[int]string{steadyVMIs: launcherNodeName, 0: "node-without-vmis"}[n]
			col := collectorFor(b, fmt.Sprint("rss-", n), func() (*collector, error) {
				bin, err := copiedCollectorBin()
				if err != nil {
					return nil, err
				}
				return startCollectorWith(c, node, map[string]any{"source": "launcher", "pods_dir": pods.PodsDir()}, bin)
			})
			waitSeries(b, col, n)
			waitFor(b, "the watch to be synced", time.Minute, func() bool {
				body, err := col.Scrape(context.Background())
				return err == nil && strings.Contains(body, "kubevirt_vmi_hypervisor_watch_synced 1\n")
			})
			for range b.N {
				<-time.After(10 * time.Second) // let the start-up's garbage go
				reportRSS(b, col.pid, "")
			}
		})
	}
}

// copiedCollectorBin copies the built collector into a directory of its own, as cp
// does, and returns the copy's path.
func copiedCollectorBin() (string, error) {
	bin, err := collectorBin()
	if err != nil {
		return "", err
	}
	dir, err := tempDir()
	if err != nil {
		return "", err
	}
	src, err := os.Open(bin)
	if err != nil {
		return "", err
	}
	defer src.Close()
	copyPath := filepath.Join(dir, filepath.Base(bin))
	dst, err := os.OpenFile(copyPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return "", err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return "", err
	}
	return copyPath, dst.Close()
}

// launcherNodeName is the node of launcherNodeWith's VMIs.
const launcherNodeName = "node-launchers"

var launcherNodes fixtures[int, *testenv.Node]

// launcherNodeWith returns a kubelet-style pods directory with the launcher pods of n
// Running VMIs of set "launch" on launcherNodeName, created in c: each pod's
// libvirt-runtime holds the status file of a running KVM domain, where a non-root
// launcher's libvirt keeps it.
func launcherNodeWith(b *testing.B, c *cluster, n int) *testenv.Node {
	return launcherNodes.get(b, n, func() (*testenv.Node, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		node, err := testenv.StartNode(ctx, testenv.NodeOptions{NodeName: launcherNodeName})
		if err != nil {
			return nil, err
		}
		atExit(node.Stop)
		err = parallel(n, 16, func(i int) error {
			ns, name := setVMI("launch", i)
			podUID := newUID()
			dir := filepath.Join(node.RealPodsDir(), podUID, launcher.VolumeRelPath, "qemu", "run")
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			domain := launcher.DomainName(ns, name)
			status := fmt.Sprintf("<domstatus state='running' reason='booted' pid='%d'>\n  <domain type='kvm' id='%d'>\n"+
				"    <name>%s</name>\n    <memory unit='KiB'>65536</memory>\n    <os><type arch='x86_64'>hvm</type></os>\n"+
				"  </domain>\n</domstatus>\n", 1000+i, i+1, domain)
			if err := os.WriteFile(filepath.Join(dir, domain+".xml"), []byte(status), 0o600); err != nil {
				return err
			}
			_, err := c.vmis(ns).Create(ctx, realisticVMI(ns, name, launcherNodeName, "Running", podUID), metav1.CreateOptions{})
			return err
		})
		return node, err
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
