package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/receiver/receivertest"
	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/kube"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/vmi"
)

// heapAtSize remembers the receiver's heap by VMI count, for the marginal cost.
var heapAtSize = map[int]float64{}

// BenchmarkMemory measures the live heap per running VMI against the real API server:
// N VMIs, all Running on the receiver's node with a realistic status (launcher pod,
// runtime user, conditions, interfaces...), each with a running test-driver domain.
//
//   - receiver/vmis=N: the whole receiver, built by its factory as the collector
//     builds it (informer cache, work queue, series set, known types, emitter), once
//     every VMI has its series. B/vmi is (heap with the receiver - heap without) / N,
//     fixed costs included; marginal-B/vmi is the slope between the two sizes.
//   - watcher/vmis=N: the VMI informer alone (internal/vmi), once synced.
//
// Heap is runtime.MemStats.HeapAlloc after two forced GCs: live objects only. Run with
// -benchtime=1x.
func BenchmarkMemory(b *testing.B) {
	for _, n := range []int{250, 1000} {
		b.Run(fmt.Sprintf("receiver/vmis=%d", n), func(b *testing.B) {
			c, uri, node := memoryFixture(b, n)
			var perVMI float64
			for range b.N {
				perVMI = receiverHeap(b, c, uri, node, n)
			}
			heapAtSize[n] = perVMI * float64(n)
			b.ReportMetric(perVMI, "B/vmi")
			if h, ok := heapAtSize[250]; ok && n > 250 {
				b.ReportMetric((heapAtSize[n]-h)/float64(n-250), "marginal-B/vmi")
			}
		})
		b.Run(fmt.Sprintf("watcher/vmis=%d", n), func(b *testing.B) {
			c, _, node := memoryFixture(b, n)
			for range b.N {
				b.ReportMetric(watcherHeap(b, c, node, n), "B/vmi")
			}
		})
	}
}

// memoryFixture returns the cluster with n Running VMIs for the node it returns, and
// the test-driver URI that runs their domains.
func memoryFixture(b *testing.B, n int) (*cluster, string, string) {
	c := sharedCluster(b)
	set := fmt.Sprintf("mem%d", n)
	node := "node-" + set
	vmisFixture.get(b, set, func() (struct{}, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		defer cancel()
		start := time.Now()
		err := c.createVMIs(ctx, set, 0, n, node, "Running")
		b.Logf("created %d VMIs in %v", n, time.Since(start).Round(time.Millisecond))
		return struct{}{}, err
	})
	return c, testDriverWith(b, set, n), node
}

var vmisFixture fixtures[string, struct{}]

// receiverHeap starts a receiver for node, waits until it reports all n VMIs, and
// returns its live heap per VMI.
func receiverHeap(b *testing.B, c *cluster, uri, node string, n int) float64 {
	b.Setenv("KUBECONFIG", c.api.KubeconfigPath)
	f := kubevirtreceiver.NewFactory()
	cfg := f.CreateDefaultConfig().(*kubevirtreceiver.Config)
	cfg.NodeName = node
	cfg.AuthType = kube.AuthKubeConfig
	cfg.Libvirt.Source = kubevirtreceiver.SourceURI
	cfg.Libvirt.URI = uri
	counter := newSeriesCounter(n) // before base: the counter's own memory is not the receiver's
	next, err := consumer.NewMetrics(counter.consume)
	if err != nil {
		b.Fatal(err)
	}

	base := liveHeap()
	rcv, err := f.CreateMetrics(context.Background(), receivertest.NewNopSettings(f.Type()), cfg, next)
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	if err := rcv.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		b.Fatal(err)
	}
	defer shutdown(b, rcv)
	waitFor(b, fmt.Sprintf("%d series", n), 10*time.Minute, func() bool { return counter.live() == n })
	b.ReportMetric(time.Since(start).Seconds(), "all-series-s")
	heap := liveHeap()
	writeHeapProfile(b, fmt.Sprintf("receiver-%d", n))
	b.ReportMetric(float64(heap-base)/(1<<20), "heap-MiB")
	return float64(heap-base) / float64(n)
}

func shutdown(b *testing.B, rcv receiver.Metrics) {
	if err := rcv.Shutdown(context.Background()); err != nil {
		b.Error(err)
	}
}

// watcherHeap starts a VMI watcher for node, waits until it holds all n VMIs, and
// returns its live heap per VMI.
func watcherHeap(b *testing.B, c *cluster, node string, n int) float64 {
	var added atomic.Int64
	base := liveHeap()
	w, err := vmi.NewWatcher(c.api.Config, node, zap.NewNop(), vmi.WatcherHandlers{Changed: func(string) { added.Add(1) }})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w.Start(ctx)
	defer func() { cancel(); w.Shutdown() }()
	// Each VMI is reported once as it enters the cache, and nothing changes them.
	waitFor(b, fmt.Sprintf("%d VMIs in the cache", n), 10*time.Minute, func() bool { return w.Health().Synced && added.Load() == int64(n) })
	heap := liveHeap()
	writeHeapProfile(b, fmt.Sprintf("watcher-%d", n))
	return float64(heap-base) / float64(n)
}

// writeHeapProfile writes the live heap to $BENCH_HEAPPROFILE/<name>.pprof when that
// is set, for `go tool pprof -sample_index=inuse_space`: where the bytes per VMI go.
// Set BENCH_MEMPROFILERATE=1 too, or small objects are sampled away.
func writeHeapProfile(b *testing.B, name string) {
	dir := os.Getenv("BENCH_HEAPPROFILE")
	if dir == "" {
		return
	}
	f, err := os.Create(filepath.Join(dir, name+".pprof"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		b.Fatal(err)
	}
}

func init() {
	// Before anything allocates, so that the profile sees every object.
	if r, err := strconv.Atoi(os.Getenv("BENCH_MEMPROFILERATE")); err == nil {
		runtime.MemProfileRate = r
	}
}

// liveHeap returns the bytes of live heap objects. The second GC frees what the first
// one's finalizers released.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// seriesCounter consumes the receiver's batches and follows which VMIs of the set
// (numbered as setVMI numbers them) have a live hypervisor series: a batch carries
// what changed, or everything.
type seriesCounter struct {
	mu  sync.Mutex
	has []bool
	n   int
}

func newSeriesCounter(n int) *seriesCounter { return &seriesCounter{has: make([]bool, n)} }

func (s *seriesCounter) live() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

func (s *seriesCounter) consume(_ context.Context, md pmetric.Metrics) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rm := range md.ResourceMetrics().All() {
		for _, sm := range rm.ScopeMetrics().All() {
			for _, m := range sm.Metrics().All() {
				if m.Name() != "kubevirt.vmi.hypervisor.info" {
					continue
				}
				for _, dp := range m.Gauge().DataPoints().All() {
					name, _ := dp.Attributes().Get("name")
					i, err := strconv.Atoi(name.Str()[strings.LastIndexByte(name.Str(), '-')+1:])
					if err != nil || i >= len(s.has) {
						return fmt.Errorf("series of an unknown VMI %q", name.Str())
					}
					if live := !dp.Flags().NoRecordedValue(); live != s.has[i] {
						s.has[i] = live
						s.n += map[bool]int{true: 1, false: -1}[live]
					}
				}
			}
		}
	}
	return nil
}

// waitFor polls cond until it holds, failing b after within.
func waitFor(b *testing.B, what string, within time.Duration, cond func() bool) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	if err := wait.PollUntilContextCancel(ctx, 10*time.Millisecond, true, func(context.Context) (bool, error) { return cond(), nil }); err != nil {
		b.Fatalf("waiting for %s: %v", what, err)
	}
}
