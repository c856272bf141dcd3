package kubevirtreceiver

import (
	"sync"

	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/histogram"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/metadata"
)

// Self-observation: how long detections take and why they fail, emitted beside the
// hypervisor series so that users watch both on the endpoint they already scrape.
const (
	durationMetric = "kubevirt.vmi.hypervisor.detection.duration"
	durationDesc   = "Time to detect a VMI's hypervisor: the libvirt lookup and reading its domain XML."
)

// durationBounds are the histogram's upper bounds in seconds: a local libvirt RPC takes
// well under a millisecond, a struggling one up to the 5s default timeout.
var durationBounds = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}

// detectionStats accumulates the receiver's own metrics. It is safe for concurrent use.
type detectionStats struct {
	duration *histogram.Histogram

	mu       sync.Mutex
	failures map[metadata.AttributeReason]int64
}

func newDetectionStats() *detectionStats {
	return &detectionStats{
		duration: histogram.New(durationBounds),
		failures: map[metadata.AttributeReason]int64{},
	}
}

func (s *detectionStats) fail(reason metadata.AttributeReason) {
	s.mu.Lock()
	s.failures[reason]++
	s.mu.Unlock()
}

// recordFailures adds the cumulative failure counts, for reasons seen so far, to mb.
func (s *detectionStats) recordFailures(mb *metadata.MetricsBuilder, now pcommon.Timestamp) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for reason, n := range s.failures {
		mb.RecordKubevirtVmiHypervisorDetectionFailuresDataPoint(now, n, reason)
	}
}
