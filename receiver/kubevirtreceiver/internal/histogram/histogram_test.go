package histogram

import (
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

func TestHistogramBucketsAndCumulates(t *testing.T) {
	h := New([]float64{0.001, 0.01, 0.1})
	metrics := pmetric.NewMetricSlice()
	h.AppendTo(metrics, "d", "", 0)
	if metrics.Len() != 0 {
		t.Fatal("an empty histogram was written")
	}
	for _, d := range []time.Duration{500 * time.Microsecond, time.Millisecond, 5 * time.Millisecond, time.Second} {
		h.Observe(d)
	}
	h.AppendTo(metrics, "kubevirt.vmi.hypervisor.detection.duration", "x", pcommon.Timestamp(42))
	dp := metrics.At(0).Histogram().DataPoints().At(0)
	if got := dp.BucketCounts().AsRaw(); len(got) != 4 || got[0] != 2 || got[1] != 1 || got[2] != 0 || got[3] != 1 {
		t.Errorf("bucket counts = %v, want [2 1 0 1] (bounds are inclusive upper bounds)", got)
	}
	if dp.Count() != 4 || dp.Sum() < 1.0065 || dp.Sum() > 1.0066 {
		t.Errorf("count %d sum %v", dp.Count(), dp.Sum())
	}
	if metrics.At(0).Unit() != "s" || metrics.At(0).Histogram().AggregationTemporality() != pmetric.AggregationTemporalityCumulative {
		t.Error("want a cumulative histogram in seconds")
	}
}
