package kubevirtreceiver

import (
	"context"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.uber.org/zap"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/hypervisor"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/series"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/vmi"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/metadata"
)

const infoMetric = "kubevirt.vmi.hypervisor.info"

// selfMetricsGap is the least time between two batches sent because a self-metric
// changed: failures come in bursts (every VMI of an unreachable libvirt, each retry of
// the watch) and one batch a second shows them all.
const selfMetricsGap = time.Second

// emitter turns the series set and the detection statistics into batches.
type emitter struct {
	mb       *metadata.MetricsBuilder
	resource pcommon.Resource
	set      *series.Set
	stats    *detectionStats
	// watch returns the VMI watch's health; nil leaves the watch metrics out.
	watch func() vmi.Health
}

func (r *kubevirtReceiver) newEmitter() *emitter {
	// Every batch describes this node: k8s.node.name on the resource, for OTLP backends.
	rb := metadata.NewResourceBuilder(r.cfg.ResourceAttributes)
	rb.SetK8sNodeName(r.cfg.NodeName)
	e := &emitter{
		mb:       metadata.NewMetricsBuilder(r.cfg.MetricsBuilderConfig, r.set),
		resource: rb.Emit(),
		set:      r.series,
		stats:    r.stats,
	}
	if r.watcher != nil { // nil only in tests that drive the emitter alone
		e.watch = r.watcher.Health
	}
	return e
}

// emitLoop emits the current series after every change to the set and every
// collection_interval, and the self-metrics within selfMetricsGap of a change, until
// ctx ends.
func (r *kubevirtReceiver) emitLoop(ctx context.Context) {
	e := r.newEmitter()
	ticker := time.NewTicker(r.cfg.CollectionInterval)
	defer ticker.Stop()
	var last time.Time
	var gap <-chan time.Time // set while a self-metrics batch waits for selfMetricsGap
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.series.Changed():
		case <-ticker.C:
		case <-r.selfChanged:
			if gap != nil {
				continue
			}
			if wait := selfMetricsGap - time.Since(last); wait > 0 {
				gap = time.After(wait)
				continue
			}
		case <-gap:
		}
		gap, last = nil, time.Now()
		md, removed := e.build(pcommon.NewTimestampFromTime(time.Now()))
		if md.DataPointCount() == 0 {
			continue
		}
		if err := r.next.ConsumeMetrics(ctx, md); err != nil {
			// Live series go out again with the next batch anyway; retractions would be
			// lost, and their series left on the endpoint until metric_expiration.
			r.series.Unsent(removed)
			r.logger.Warn("Failed to pass on hypervisor metrics; retrying with the next batch", zap.Error(err))
		}
	}
}

// build makes one batch: a point of value 1 for every live series, a point flagged
// NoRecordedValue for every series removed since the last batch (so that exporters drop
// it at once instead of letting it linger until it expires), and the detection
// statistics. Retractions share the live points' resource and scope, because the
// Prometheus exporter identifies a series by those too.
func (e *emitter) build(now pcommon.Timestamp) (md pmetric.Metrics, removed []series.Series) {
	live, removed := e.set.Take()
	for _, s := range live {
		record(e.mb, s, now)
	}
	// Retractions go through the builder too, so they carry the live points' metadata.
	for _, s := range removed {
		record(e.mb, s, now)
	}
	e.stats.recordFailures(e.mb, now)
	if e.watch != nil {
		recordWatch(e.mb, e.watch(), now)
	}
	md = e.mb.Emit(metadata.WithResource(e.resource))
	metrics := e.scopeMetrics(md)
	for i := range metrics.Len() {
		if metrics.At(i).Name() == infoMetric {
			splitRetractions(metrics, i, len(live))
			break
		}
	}
	e.stats.duration.AppendTo(metrics, durationMetric, durationDesc, now)
	return md, removed
}

// scopeMetrics returns the batch's only metric slice, creating the resource and scope
// when the builder had nothing to emit.
func (e *emitter) scopeMetrics(md pmetric.Metrics) pmetric.MetricSlice {
	if md.ResourceMetrics().Len() == 0 {
		rm := md.ResourceMetrics().AppendEmpty()
		e.resource.CopyTo(rm.Resource())
		rm.ScopeMetrics().AppendEmpty().Scope().SetName(metadata.ScopeName)
	}
	return md.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics()
}

// splitRetractions moves the points after the first nLive of metrics[idx] into metrics
// of their own, flagged NoRecordedValue. The Prometheus exporter honours one such point
// per metric and skips the points after it, so one retraction per metric is the only
// shape that removes every series.
func splitRetractions(metrics pmetric.MetricSlice, idx, nLive int) {
	m := metrics.At(idx)
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
		metrics.RemoveIf(func(x pmetric.Metric) bool { return x.Name() == infoMetric && x.Gauge().DataPoints().Len() == 0 })
	}
}

// recordWatch adds the VMI watch's health: whether it is synced, how stale the view
// is, and its failures by reason.
func recordWatch(mb *metadata.MetricsBuilder, h vmi.Health, now pcommon.Timestamp) {
	synced := int64(0)
	if h.Synced {
		synced = 1
	}
	mb.RecordKubevirtVmiHypervisorWatchSyncedDataPoint(now, synced)
	mb.RecordKubevirtVmiHypervisorWatchStalenessDataPoint(now, h.Staleness.Seconds())
	for reason, n := range h.Failures {
		if a, ok := metadata.MapAttributeWatchReason[string(reason)]; ok {
			mb.RecordKubevirtVmiHypervisorWatchFailuresDataPoint(now, n, a)
		}
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
