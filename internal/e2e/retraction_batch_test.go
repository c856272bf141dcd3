package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv"
)

// TestSeveralRetractionsInOneBatchAllVanish removes several VMIs while the receiver's
// emitter is held up, so that their retractions leave in one batch, and checks that the
// real Prometheus exporter drops every one of them. The exporter's accumulator stops
// reading a metric's points at the first one flagged NoRecordedValue (accumulator.go,
// accumulateGauge: `return 0`), so a batch that carried the retractions as points of a
// single metric would leave all but one series behind until metric_expiration.
//
// The hold-up is real: the collector runs testdata/gated.yaml, in which the receiver
// hands each batch to the Prometheus exporter and then, synchronously, to an OTLP
// exporter whose receiving end (a second collector) is frozen with SIGSTOP. The frozen
// collector also proves the shape: once thawed it records the batch, and the test
// requires that one batch to hold all the retractions.
func TestSeveralRetractionsInOneBatchAllVanish(t *testing.T) {
	bin := collectorBinary(t)
	l := newLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	s := startSink(ctx, t)
	names := []string{"first", "second", "third", "fourth"}
	var want []string
	for _, name := range names {
		want = append(want, l.runTCG(ctx, t, "default", name))
	}
	col := startCollectorWith(ctx, t, testenv.CollectorOptions{
		Bin:    bin,
		Config: repoFile(t, "internal/e2e/testdata/gated.yaml"),
		Env:    append(l.collectorEnv(), "OTLP_ENDPOINT="+s.Endpoint),
	})
	waitForLines(ctx, t, col, want...)
	// The OTLP connection is up: later exports wait for an answer rather than fail fast.
	var live []otlpPoint
	for _, name := range names {
		live = append(live, wantOTLPPoint("qemu-tcg", "default", name, false))
	}
	waitForPoints(ctx, t, s, "the four live points", live...)

	s.freeze(t)
	// The first removal is emitted alone. Once its line is gone the Prometheus exporter
	// has had the batch, and the emitter is waiting on the frozen OTLP export (2s).
	start := time.Now()
	if err := l.api.DeleteVMI(ctx, "default", "first"); err != nil {
		t.Fatal(err)
	}
	waitUntilGone(ctx, t, col, start, want[0])
	// These three pile up meanwhile and leave together when the export times out.
	for _, name := range names[1:] {
		if err := l.api.DeleteVMI(ctx, "default", name); err != nil {
			t.Fatal(err)
		}
	}
	took := waitUntilGone(ctx, t, col, start, want[1:]...)
	t.Logf("three retractions batched behind a frozen OTLP export: all gone %v after the first removal", took.Round(time.Millisecond))
	waitForLines(ctx, t, col)

	// The batch that removed them is now being exported; thawed, the sink records it.
	// It may retract "first" again: the batch that carried its retraction failed on the
	// OTLP side, and the receiver resends the retractions of failed batches (as it does
	// this one's, if its export too times out before the sink thaws).
	s.thaw(t)
	want3 := []otlpPoint{
		wantOTLPPoint("qemu-tcg", "default", "second", true),
		wantOTLPPoint("qemu-tcg", "default", "third", true),
		wantOTLPPoint("qemu-tcg", "default", "fourth", true),
	}
	waitForBatch(ctx, t, s, "one batch retracting second, third and fourth", func(b batch) bool {
		return sameBatch(b, want3...) || sameBatch(b, append(want3, wantOTLPPoint("qemu-tcg", "default", "first", true))...)
	})
}
