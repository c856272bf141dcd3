package soak

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv"
)

// defaultSoakTime is the soak `make test` runs; `make soak` runs SOAK_TIME (10m).
const defaultSoakTime = 60 * time.Second

// TestSoak runs the soak for SOAK_TIME (60 s unless set) with seed SOAK_SEED (random
// unless set) and fails on any mismatch or resource that grew. The report is logged
// (go test -v, as `make soak` runs it, shows it as it comes). SOAK_DIR keeps the
// collectors' logs there; SOAK_VERBOSE=1 logs every change.
func TestSoak(t *testing.T) {
	testenv.RequireDaemons(t, "kube-apiserver, libvirtds with QEMU guests and three collectors for a minute")
	bin := os.Getenv(testenv.CollectorBinEnv)
	if bin == "" {
		testenv.Unavailable(t, "%s is not set; `make test` and `make soak` build the collector and set it", testenv.CollectorBinEnv)
	}
	if _, err := testenv.KubeAssetsDir(); errors.Is(err, testenv.ErrKubeAssetsMissing) && os.Getenv("KUBEBUILDER_ASSETS") == "" {
		testenv.Unavailable(t, "%v", err)
	}
	if _, err := testenv.LookupLibvirtd(); err != nil {
		testenv.Unavailable(t, "%v", err)
	}
	d := defaultSoakTime
	if v := os.Getenv("SOAK_TIME"); v != "" {
		var err error
		if d, err = time.ParseDuration(v); err != nil || d <= 0 {
			t.Fatalf("SOAK_TIME=%q: want a positive duration such as 10m (%v)", v, err)
		}
	}
	var seed uint64
	if v := os.Getenv("SOAK_SEED"); v != "" {
		var err error
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil || seed == 0 {
			t.Fatalf("SOAK_SEED=%q: want a positive integer, as a soak prints it (%v)", v, err)
		}
	}
	dir := os.Getenv("SOAK_DIR") // kept, for the collectors' logs
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// Setting up, the warm-up and the drain take a minute or two; recovering from a
	// fault takes at most apiBound twice.
	ctx, cancel := context.WithTimeout(context.Background(), d+15*time.Minute)
	defer cancel()
	// Ctrl-C ends the soak with its report and stops what it started (etcd and
	// kube-apiserver would outlive a killed test).
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	// `make soak` turns go test's -timeout off (a Makefile cannot derive it from
	// SOAK_TIME); this stands in for it, should something hang beyond ctx's reach.
	alarm := time.AfterFunc(d+20*time.Minute, func() {
		debug.SetTraceback("all")
		panic(fmt.Sprintf("soak still running %v after SOAK_TIME=%v began: something hangs", d+20*time.Minute, d))
	})
	defer alarm.Stop()
	rep, err := Run(ctx, Options{
		Duration: d, Seed: seed, Bin: bin, Dir: dir, Logf: t.Logf,
		Verbose: os.Getenv("SOAK_VERBOSE") != "",
	})
	if rep != nil {
		t.Logf("soak report:\n%s", rep)
	}
	if err != nil {
		t.Fatal(err)
	}
	if n := len(rep.Mismatches); n > 0 {
		t.Errorf("%d mismatches between the endpoints and the oracle (replay: SOAK_SEED=%d SOAK_TIME=%v)", n, rep.Seed, d)
	}
	if !rep.Flat() {
		t.Errorf("the collectors' resources grew (replay: SOAK_SEED=%d SOAK_TIME=%v)", rep.Seed, d)
	}
	if n := len(rep.Stale); n > 0 {
		t.Errorf("%d times a collector showed watch_synced 1 for more than %v while it did not follow the API server "+
			"(replay: SOAK_SEED=%d SOAK_TIME=%v)", n, staleGrace, rep.Seed, d)
	}
	if rep.QuietPoints == 0 || len(rep.Events) == 0 {
		t.Errorf("the soak checked %d quiet points after %d events: it did nothing", rep.QuietPoints, len(rep.Events))
	}
}
