// Package bench measures otelcol-kubevirt against real dependencies: detection through
// the real libvirt client, event-to-endpoint latency and CPU of the built collector,
// and the receiver's live heap per VMI against a real kube-apiserver. It holds only
// benchmarks, so `go test ./...` runs nothing here; `make bench` runs them and
// docs/benchmarks.md records the figures and the exact commands.
//
// The dependencies (an API server with thousands of VMIs, a libvirtd with a hundred
// guests) take up to a minute to set up, and the testing package calls a benchmark
// function more than once (b.N = 1 first), so they are built once per process, shared
// by every benchmark that needs the same thing, and torn down in TestMain.
package bench

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
)

// teardowns are the fixtures' stop functions, run in reverse order after the run.
var (
	teardownMu sync.Mutex
	teardowns  []func() error
)

// atExit registers stop to run when the benchmark binary finishes.
func atExit(stop func() error) {
	teardownMu.Lock()
	defer teardownMu.Unlock()
	teardowns = append(teardowns, stop)
}

func TestMain(m *testing.M) {
	if node := os.Getenv(watchOnlyEnv); node != "" {
		// This process is BenchmarkCPU's watch-only process.
		fmt.Fprintln(os.Stderr, "watch-only:", runWatchOnly(node))
		os.Exit(1)
	}
	if uri := os.Getenv(scrapeTimeExporterEnv); uri != "" {
		// This process is BenchmarkScrapeVsLibvirt's at-scrape exporter.
		fmt.Fprintln(os.Stderr, "at-scrape exporter:", runScrapeTimeExporter(uri, os.Getenv(scrapeTimeExporterAddrEnv)))
		os.Exit(1)
	}
	code := m.Run()
	teardownMu.Lock()
	for i := len(teardowns) - 1; i >= 0; i-- {
		if err := teardowns[i](); err != nil {
			fmt.Fprintln(os.Stderr, "bench teardown:", err)
		}
	}
	teardownMu.Unlock()
	os.Exit(code)
}

// fixture builds a value once per process and hands out the same value, or the same
// error, to every later caller.
type fixture[T any] struct {
	once sync.Once
	val  T
	err  error
}

// get returns the fixture, building it with build on first use. A failed build fails
// every benchmark that needs it, each with the same error.
func (f *fixture[T]) get(b *testing.B, build func() (T, error)) T {
	b.Helper()
	f.once.Do(func() { f.val, f.err = build() })
	var skip skipError
	if errors.As(f.err, &skip) {
		b.Skip(skip.Error())
	}
	if f.err != nil {
		b.Fatal(f.err)
	}
	return f.val
}

// fixtures is a fixture per key, e.g. per guest count.
type fixtures[K comparable, T any] struct {
	mu sync.Mutex
	m  map[K]*fixture[T]
}

// get returns the fixture for key, building it with build on first use.
func (fs *fixtures[K, T]) get(b *testing.B, key K, build func() (T, error)) T {
	b.Helper()
	fs.mu.Lock()
	if fs.m == nil {
		fs.m = map[K]*fixture[T]{}
	}
	f, ok := fs.m[key]
	if !ok {
		f = &fixture[T]{}
		fs.m[key] = f
	}
	fs.mu.Unlock()
	return f.get(b, build)
}

// skipError marks a fixture that cannot be built here for want of something installed
// or built (kube-apiserver assets, libvirtd, the collector binary): the benchmarks
// that need it are skipped rather than failed.
type skipError struct{ err error }

func (e skipError) Error() string { return "skipping: " + e.err.Error() }
