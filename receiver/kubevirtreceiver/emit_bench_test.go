package kubevirtreceiver

import (
	"fmt"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/hypervisor"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/inventory"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/metadata"
)

// BenchmarkBuild measures the receiver's side of one emission on a node with 1000
// running VMIs: full, the batch of every series sent every collection_interval;
// change, the batch sent after one VMI changed (its new series and the retraction of
// its old one). The collector's end-to-end costs are in internal/bench.
func BenchmarkBuild(b *testing.B) {
	inv := inventory.New()
	types := []hypervisor.Type{hypervisor.KVM, hypervisor.QEMUTCG, hypervisor.MSHV}
	for i := range 1000 {
		inv.Put(fmt.Sprintf("ns-%d/vm-%04d", i%10, i), inventory.Record{Reported: types[i%3]})
	}
	e := testEmitter(metadata.NewDefaultMetricsBuilderConfig(), inv)
	now := pcommon.NewTimestampFromTime(time.Now())
	b.Run("full-1000", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if md, _, _ := e.build(now, full); md.DataPointCount() < 1000 {
				b.Fatalf("%d points", md.DataPointCount())
			}
		}
	})
	b.Run("change-1-of-1000", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			i++
			inv.Put("ns-0/vm-0000", inventory.Record{Reported: types[i%3]})
			if md, _, _ := e.build(now, changes); md.DataPointCount() != 2 {
				b.Fatalf("%d points", md.DataPointCount())
			}
		}
	})
}
