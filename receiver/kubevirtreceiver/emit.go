package kubevirtreceiver

import (
	"context"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.uber.org/zap"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/hypervisor"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/series"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/metadata"
)

// emitLoop emits the current series after every change to the set and every
// collection_interval, until ctx ends.
func (r *kubevirtReceiver) emitLoop(ctx context.Context) {
	mb := metadata.NewMetricsBuilder(r.cfg.MetricsBuilderConfig, r.set)
	ticker := time.NewTicker(r.cfg.CollectionInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.series.Changed():
		case <-ticker.C:
		}
		md := buildMetrics(mb, r.series, pcommon.NewTimestampFromTime(time.Now()))
		if md.DataPointCount() == 0 {
			continue
		}
		if err := r.next.ConsumeMetrics(ctx, md); err != nil {
			r.logger.Warn("Failed to pass on hypervisor metrics", zap.Error(err))
		}
	}
}

// buildMetrics turns the set into one batch: a point of value 1 for every live series,
// and a point flagged NoRecordedValue for every series removed since the last batch, so
// that exporters drop it at once instead of letting it linger until it expires.
func buildMetrics(mb *metadata.MetricsBuilder, set *series.Set, now pcommon.Timestamp) pmetric.Metrics {
	live, removed := set.Take()
	for _, s := range live {
		record(mb, s, now)
	}
	// Retractions go through the builder too, so they carry the live points' metadata.
	for _, s := range removed {
		record(mb, s, now)
	}
	md := mb.Emit()
	if len(removed) > 0 && md.ResourceMetrics().Len() > 0 { // none when the metric is disabled
		splitRetractions(md.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics(), len(live))
	}
	return md
}

// splitRetractions moves the points after the first nLive of the only metric in
// metrics into metrics of their own, flagged NoRecordedValue. The Prometheus exporter
// honours one such point per metric and skips the points after it, so one retraction
// per metric is the only shape that removes every series.
func splitRetractions(metrics pmetric.MetricSlice, nLive int) {
	m := metrics.At(0)
	points := m.Gauge().DataPoints()
	for i := nLive; i < points.Len(); i++ {
		r := metrics.AppendEmpty()
		r.SetName(m.Name())
		r.SetDescription(m.Description())
		r.SetUnit(m.Unit())
		p := r.SetEmptyGauge().DataPoints().AppendEmpty()
		points.At(i).CopyTo(p)
		p.SetFlags(pmetric.DefaultDataPointFlags.WithNoRecordedValue(true))
		p.SetIntValue(0)
	}
	i := 0
	points.RemoveIf(func(pmetric.NumberDataPoint) bool { i++; return i > nLive })
	if nLive == 0 {
		metrics.RemoveIf(func(x pmetric.Metric) bool { return x.Gauge().DataPoints().Len() == 0 })
	}
}

func record(mb *metadata.MetricsBuilder, s series.Series, now pcommon.Timestamp) {
	mb.RecordKubevirtVmiHypervisorInfoDataPoint(now, 1, s.Namespace, s.Name, s.Node, attributeType(s.Type))
}

func attributeType(t hypervisor.Type) metadata.AttributeHypervisorType {
	if a, ok := metadata.MapAttributeHypervisorType[string(t)]; ok {
		return a
	}
	return metadata.AttributeHypervisorTypeUnknown
}
