// Package histogram accumulates durations into a cumulative explicit-bucket histogram
// and writes it as an OpenTelemetry data point.
package histogram

import (
	"sync"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

// Histogram counts observations in seconds. It is safe for concurrent use.
type Histogram struct {
	bounds []float64 // upper bounds, seconds, ascending
	start  pcommon.Timestamp

	mu     sync.Mutex
	counts []uint64 // len(bounds)+1; the last is the overflow bucket
	count  uint64
	sum    float64
}

// New returns an empty Histogram with upper bucket bounds in seconds.
func New(bounds []float64) *Histogram {
	return &Histogram{
		bounds: bounds,
		start:  pcommon.NewTimestampFromTime(time.Now()),
		counts: make([]uint64, len(bounds)+1),
	}
}

// Observe adds one duration.
func (h *Histogram) Observe(d time.Duration) {
	s := d.Seconds()
	i := 0
	for i < len(h.bounds) && s > h.bounds[i] {
		i++
	}
	h.mu.Lock()
	h.counts[i]++
	h.count++
	h.sum += s
	h.mu.Unlock()
}

// AppendTo writes the histogram as a cumulative metric called name with unit "s" and
// description desc into metrics. Nothing is written before the first observation.
func (h *Histogram) AppendTo(metrics pmetric.MetricSlice, name, desc string, now pcommon.Timestamp) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.count == 0 {
		return
	}
	m := metrics.AppendEmpty()
	m.SetName(name)
	m.SetDescription(desc)
	m.SetUnit("s")
	hist := m.SetEmptyHistogram()
	hist.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	dp := hist.DataPoints().AppendEmpty()
	dp.SetStartTimestamp(h.start)
	dp.SetTimestamp(now)
	dp.SetCount(h.count)
	dp.SetSum(h.sum)
	dp.ExplicitBounds().FromRaw(h.bounds)
	dp.BucketCounts().FromRaw(h.counts)
}
