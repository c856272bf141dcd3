package kubevirtreceiver

import (
	"fmt"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/hypervisor"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/series"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/metadata"
)

// BenchmarkBuild1000 measures the receiver's side of one emission with 1000 live
// series: the batch the emitter builds after every change and every
// collection_interval. The collector's end-to-end costs are in internal/bench.
func BenchmarkBuild1000(b *testing.B) {
	set := series.NewSet()
	types := []hypervisor.Type{hypervisor.KVM, hypervisor.QEMUTCG, hypervisor.MSHV}
	for i := range 1000 {
		ns, name := fmt.Sprintf("ns-%d", i%10), fmt.Sprintf("vm-%04d", i)
		set.Put(ns+"/"+name, series.Series{Namespace: ns, Name: name, Node: "worker-node-1", Type: types[i%3]})
	}
	e := testEmitter(metadata.NewDefaultMetricsBuilderConfig(), set)
	now := pcommon.NewTimestampFromTime(time.Now())
	b.ReportAllocs()
	for b.Loop() {
		md, _ := e.build(now)
		if md.DataPointCount() < 1000 {
			b.Fatalf("%d points", md.DataPointCount())
		}
	}
}
