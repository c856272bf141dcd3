// Package percentile computes percentiles of measured durations by the nearest-rank
// method, for the benchmarks' and the soak's reports. It does not interpolate, bucket
// or keep a running estimate: it sorts a copy of what it is given.
package percentile

import (
	"math"
	"slices"
	"time"
)

// Of returns the q-quantile (0 < q <= 1) of ds by the nearest-rank method: the
// smallest value at least a fraction q of ds is at or below. 0 for no values.
func Of(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(rank, 0)]
}
