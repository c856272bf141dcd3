package kubevirtreceiver

import (
	"context"
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.uber.org/zap"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/hypervisor"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/inventory"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/metadata"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/vmi"
)

const infoMetric = "kubevirt.vmi.hypervisor.info"

// selfMetricsGap is the least time between two batches sent because a self-metric
// changed: detections and failures come in bursts (every VMI of an unreachable
// libvirt, each retry of the watch, 50 transitions a second) and one batch a second
// shows them all.
const selfMetricsGap = time.Second

// batchKind says what a batch carries.
type batchKind int

const (
	// changes: the series that are new or changed since the last batch, and the
	// retractions; sent after every change.
	changes batchKind = iota
	// self: the receiver's own metrics; sent within selfMetricsGap of their change.
	self
	// full: every live series, the retractions and the receiver's own metrics; sent
	// every collection_interval, so that no live series reaches the exporter's
	// metric_expiration.
	full
)

// emitter turns the inventory and the detection statistics into batches.
type emitter struct {
	mb        *metadata.MetricsBuilder
	resource  pcommon.Resource
	node      string
	inventory *inventory.Inventory
	stats     *detectionStats
	// watch returns the VMI watch's health; nil leaves the watch metrics out.
	watch func() vmi.Health
}

func (r *kubevirtReceiver) newEmitter() *emitter {
	// Every batch describes this node: k8s.node.name on the resource, for OTLP backends.
	rb := metadata.NewResourceBuilder(r.cfg.ResourceAttributes)
	rb.SetK8sNodeName(r.cfg.NodeName)
	e := &emitter{
		mb:        metadata.NewMetricsBuilder(r.cfg.MetricsBuilderConfig, r.set),
		resource:  rb.Emit(),
		node:      validUTF8(r.cfg.NodeName),
		inventory: r.inventory,
		stats:     r.stats,
	}
	if r.watcher != nil { // nil only in tests that drive the emitter alone
		e.watch = r.watcher.Health
	}
	return e
}

// emitLoop sends what changed after every change of a series, the self-metrics within
// selfMetricsGap of a change, and everything every collection_interval, until ctx
// ends. Between these it sleeps: an idle node costs one batch per
// collection_interval.
func (r *kubevirtReceiver) emitLoop(ctx context.Context) {
	e := r.newEmitter()
	ticker := time.NewTicker(r.cfg.CollectionInterval)
	defer ticker.Stop()
	gap := time.NewTimer(selfMetricsGap)
	gap.Stop()
	defer gap.Stop()
	var lastSelf time.Time
	waiting := false // a self batch waits for gap
	for {
		kind := changes
		select {
		case <-ctx.Done():
			return
		case <-r.inventory.Changed():
		case <-ticker.C:
			kind = full
		case <-r.selfChanged:
			if waiting {
				continue
			}
			if wait := selfMetricsGap - time.Since(lastSelf); wait > 0 {
				gap.Reset(wait)
				waiting = true
				continue
			}
			kind = self
		case <-gap.C:
			waiting = false
			kind = self
		}
		if kind != changes {
			lastSelf = time.Now()
		}
		r.emit(ctx, e, kind)
	}
}

// emit builds a batch of kind and passes it on.
func (r *kubevirtReceiver) emit(ctx context.Context, e *emitter, kind batchKind) {
	md, live, retract := e.build(pcommon.NewTimestampFromTime(time.Now()), kind)
	if md.DataPointCount() == 0 {
		return
	}
	if err := r.next.ConsumeMetrics(ctx, md); err != nil {
		// Given back, they go out with the next batch; retractions lost would leave
		// their series on the endpoint until metric_expiration.
		r.inventory.Unsent(live, retract)
		r.logger.Warn("Failed to pass on hypervisor metrics; retrying with the next batch", zap.Error(err))
	}
}

// build makes one batch of kind: a point of value 1 for each live series, a point
// flagged NoRecordedValue for each series to retract (so that exporters drop it at
// once instead of letting it linger until it expires), and, unless kind is changes,
// the detection statistics and the watch's health. Retractions share the live points'
// resource and scope, because the Prometheus exporter identifies a series by those
// too. It returns the series it carries, for Unsent if the batch cannot be delivered.
func (e *emitter) build(now pcommon.Timestamp, kind batchKind) (md pmetric.Metrics, live, retract []inventory.Series) {
	switch kind {
	case changes:
		live, retract = e.inventory.Changes()
	case full:
		live, retract = e.inventory.All()
	}
	for _, s := range live {
		e.record(s, now)
	}
	// Retractions go through the builder too, so they carry the live points' metadata.
	for _, s := range retract {
		e.record(s, now)
	}
	if kind != changes {
		e.stats.recordFailures(e.mb, now)
		if e.watch != nil {
			recordWatch(e.mb, e.watch(), now)
		}
	}
	md = e.mb.Emit(metadata.WithResource(e.resource))
	metrics := e.scopeMetrics(md)
	if len(retract) > 0 {
		for i := range metrics.Len() {
			if metrics.At(i).Name() == infoMetric {
				splitRetractions(metrics, i, len(live))
				break
			}
		}
	}
	if kind != changes {
		e.stats.duration.AppendTo(metrics, durationMetric, durationDesc, now)
	}
	return md, live, retract
}

func (e *emitter) record(s inventory.Series, now pcommon.Timestamp) {
	ns, name := vmi.SplitKey(s.Key)
	e.mb.RecordKubevirtVmiHypervisorInfoDataPoint(now, 1, validUTF8(ns), validUTF8(name), e.node, attributeType(s.Type))
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

func attributeType(t hypervisor.Type) metadata.AttributeHypervisorType {
	if a, ok := metadata.MapAttributeHypervisorType[string(t)]; ok {
		return a
	}
	return metadata.AttributeHypervisorTypeUnknown
}

// validUTF8 keeps label values valid whatever an object holds; Kubernetes names are
// ASCII, so this changes nothing in practice (and then allocates nothing).
func validUTF8(s string) string {
	return strings.ToValidUTF8(s, "\uFFFD")
}
