package percentile

import (
	"testing"
	"time"
)

func TestOfIsTheNearestRank(t *testing.T) {
	ms := func(n ...int) []time.Duration {
		out := make([]time.Duration, len(n))
		for i, v := range n {
			out[i] = time.Duration(v) * time.Millisecond
		}
		return out
	}
	ds := ms(50, 10, 40, 20, 30) // unsorted on purpose
	for _, tt := range []struct {
		q    float64
		want time.Duration
	}{
		{0.01, 10 * time.Millisecond}, {0.2, 10 * time.Millisecond}, {0.21, 20 * time.Millisecond},
		{0.5, 30 * time.Millisecond}, {0.99, 50 * time.Millisecond}, {1, 50 * time.Millisecond},
	} {
		if got := Of(ds, tt.q); got != tt.want {
			t.Errorf("Of(%v, %v) = %v, want %v", ds, tt.q, got, tt.want)
		}
	}
	if ds[0] != 50*time.Millisecond {
		t.Error("Of sorted its argument in place")
	}
	if got := Of(nil, 0.5); got != 0 {
		t.Errorf("Of(nil) = %v, want 0", got)
	}
}
