package kubevirtreceiver

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/receiver/receivertest"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/hypervisor"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/inventory"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/metadata"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/vmi"
)

type point struct {
	namespace, name, node, typ string
	value                      int64
	retracted                  bool
}

// points flattens a batch, checking that every metric is the hypervisor metric and that
// no metric carries a retraction after another point (the exporter would skip it).
func points(t *testing.T, md pmetric.Metrics) []point {
	t.Helper()
	var out []point
	rms := md.ResourceMetrics()
	for i := range rms.Len() {
		sms := rms.At(i).ScopeMetrics()
		for j := range sms.Len() {
			ms := sms.At(j).Metrics()
			for k := range ms.Len() {
				m := ms.At(k)
				if m.Name() != infoMetric {
					continue
				}
				dps := m.Gauge().DataPoints()
				for l := range dps.Len() {
					dp := dps.At(l)
					if dp.Flags().NoRecordedValue() {
						require.Equal(t, 1, dps.Len(), "a retraction shares its metric with other points")
					}
					attr := func(k string) string { v, _ := dp.Attributes().Get(k); return v.Str() }
					out = append(out, point{attr("namespace"), attr("name"), attr("node"), attr("hypervisor_type"), dp.IntValue(), dp.Flags().NoRecordedValue()})
				}
			}
		}
	}
	return out
}

func TestBuildSendsWhatChangedAfterAChangeAndEverythingInFull(t *testing.T) {
	inv := inventory.New()
	e := testEmitter(metadata.NewDefaultMetricsBuilderConfig(), inv)
	now := pcommon.NewTimestampFromTime(time.Now())
	inv.Put("default/my-vm", inventory.Record{Reported: hypervisor.KVM})
	inv.Put("default/tcg", inventory.Record{Reported: hypervisor.QEMUTCG})
	inv.Put("prod/db", inventory.Record{Reported: hypervisor.Unknown})

	assert.ElementsMatch(t, []point{
		{"default", "my-vm", "worker-node-1", "kvm", 1, false},
		{"default", "tcg", "worker-node-1", "qemu-tcg", 1, false},
		{"prod", "db", "worker-node-1", "unknown", 1, false},
	}, points(t, metricsOf(e.build(now, changes))))

	// One VMI stops, another's type is read: only they are in the next batch, with one
	// retraction per metric.
	inv.Delete("default/tcg")
	inv.Put("prod/db", inventory.Record{Reported: hypervisor.MSHV})
	assert.ElementsMatch(t, []point{
		{"prod", "db", "worker-node-1", "mshv", 1, false},
		{"default", "tcg", "worker-node-1", "qemu-tcg", 0, true},
		{"prod", "db", "worker-node-1", "unknown", 0, true},
	}, points(t, metricsOf(e.build(now, changes))))
	assert.Zero(t, metricsOf(e.build(now, changes)).DataPointCount(), "nothing changed, nothing to say")

	// Every collection_interval, every live series.
	assert.ElementsMatch(t, []point{
		{"default", "my-vm", "worker-node-1", "kvm", 1, false},
		{"prod", "db", "worker-node-1", "mshv", 1, false},
	}, points(t, metricsOf(e.build(now, full))))

	inv.Delete("default/my-vm")
	inv.Delete("prod/db")
	assert.ElementsMatch(t, []point{
		{"default", "my-vm", "worker-node-1", "kvm", 0, true},
		{"prod", "db", "worker-node-1", "mshv", 0, true},
	}, points(t, metricsOf(e.build(now, changes))))
	assert.Zero(t, metricsOf(e.build(now, full)).DataPointCount(), "nothing to say once everything is retracted")
}

func TestBuildMetricsHonoursDisabledMetric(t *testing.T) {
	cfg := metadata.NewDefaultMetricsBuilderConfig()
	cfg.Metrics.KubevirtVmiHypervisorInfo.Enabled = false
	inv := inventory.New()
	e := testEmitter(cfg, inv)
	inv.Put("default/my-vm", inventory.Record{Reported: hypervisor.KVM})
	assert.Zero(t, metricsOf(e.build(pcommon.NewTimestampFromTime(time.Now()), changes)).DataPointCount())
	inv.Delete("default/my-vm")
	assert.Zero(t, metricsOf(e.build(pcommon.NewTimestampFromTime(time.Now()), changes)).DataPointCount())
}

func testEmitter(cfg metadata.MetricsBuilderConfig, inv *inventory.Inventory) *emitter {
	return &emitter{
		mb:        metadata.NewMetricsBuilder(cfg, receivertest.NewNopSettings(metadata.Type)),
		resource:  pcommon.NewResource(),
		node:      "worker-node-1",
		inventory: inv,
		stats:     newDetectionStats(),
	}
}

func TestBuildIncludesDetectionStatisticsInSelfAndFullBatches(t *testing.T) {
	inv := inventory.New()
	e := testEmitter(metadata.NewDefaultMetricsBuilderConfig(), inv)
	now := pcommon.NewTimestampFromTime(time.Now())
	assert.Zero(t, metricsOf(e.build(now, self)).DataPointCount(), "nothing detected, nothing to say")

	e.stats.duration.Observe(2 * time.Millisecond)
	e.stats.fail(metadata.AttributeReasonDomainMissing)
	e.stats.fail(metadata.AttributeReasonDomainMissing)
	inv.Put("default/my-vm", inventory.Record{Reported: hypervisor.KVM})
	assert.Equal(t, []point{{"default", "my-vm", "worker-node-1", "kvm", 1, false}}, points(t, metricsOf(e.build(now, changes))))
	assert.Zero(t, metricsOf(e.build(now, changes)).DataPointCount(), "a batch of changes carries no self-metrics")

	md := metricsOf(e.build(now, self))
	ms := md.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics()
	found := map[string]bool{}
	for i := range ms.Len() {
		m := ms.At(i)
		found[m.Name()] = true
		switch m.Name() {
		case durationMetric:
			assert.Equal(t, uint64(1), m.Histogram().DataPoints().At(0).Count())
		case "kubevirt.vmi.hypervisor.detection.failures":
			dp := m.Sum().DataPoints().At(0)
			reason, _ := dp.Attributes().Get("reason")
			assert.Equal(t, "domain_missing", reason.Str())
			assert.Equal(t, int64(2), dp.IntValue())
		}
	}
	assert.Equal(t, map[string]bool{durationMetric: true, "kubevirt.vmi.hypervisor.detection.failures": true}, found)
	assert.Equal(t, metadata.ScopeName, md.ResourceMetrics().At(0).ScopeMetrics().At(0).Scope().Name())

	// A full batch has them beside every series.
	md = metricsOf(e.build(now, full))
	assert.Equal(t, []point{{"default", "my-vm", "worker-node-1", "kvm", 1, false}}, points(t, md))
	assert.Equal(t, 3, md.DataPointCount(), "the series, the histogram and the failure count")
}

func TestBuildIncludesWatchHealth(t *testing.T) {
	e := testEmitter(metadata.NewDefaultMetricsBuilderConfig(), inventory.New())
	e.watch = func() vmi.Health {
		return vmi.Health{Staleness: 1500 * time.Millisecond, Failures: map[vmi.FailureReason]int64{vmi.ReasonForbidden: 2, vmi.ReasonUnreachable: 1}}
	}
	got := map[string]float64{}
	ms := metricsOf(e.build(pcommon.NewTimestampFromTime(time.Now()), self)).ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics()
	for i := range ms.Len() {
		m := ms.At(i)
		switch m.Name() {
		case "kubevirt.vmi.hypervisor.watch.synced":
			got[m.Name()] = float64(m.Gauge().DataPoints().At(0).IntValue())
		case "kubevirt.vmi.hypervisor.watch.staleness":
			got[m.Name()] = m.Gauge().DataPoints().At(0).DoubleValue()
		case "kubevirt.vmi.hypervisor.watch.failures":
			assert.True(t, m.Sum().IsMonotonic())
			for j := range m.Sum().DataPoints().Len() {
				dp := m.Sum().DataPoints().At(j)
				reason, _ := dp.Attributes().Get("reason")
				got[m.Name()+"{"+reason.Str()+"}"] = float64(dp.IntValue())
			}
		}
	}
	assert.Equal(t, map[string]float64{
		"kubevirt.vmi.hypervisor.watch.synced":                0,
		"kubevirt.vmi.hypervisor.watch.staleness":             1.5,
		"kubevirt.vmi.hypervisor.watch.failures{forbidden}":   2,
		"kubevirt.vmi.hypervisor.watch.failures{unreachable}": 1,
	}, got)

	// A batch without the synced metric fails here too, not only a wrong value
	// (mutation: recordWatch leaving out watch.synced when Synced is true failed with
	// "watch.synced missing").
	e.watch = func() vmi.Health { return vmi.Health{Synced: true} }
	ms = metricsOf(e.build(pcommon.NewTimestampFromTime(time.Now()), self)).ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics()
	synced := int64(-1)
	for i := range ms.Len() {
		if ms.At(i).Name() == "kubevirt.vmi.hypervisor.watch.synced" {
			synced = ms.At(i).Gauge().DataPoints().At(0).IntValue()
		}
	}
	assert.Equal(t, int64(1), synced, "watch.synced missing (-1) or wrong")
}

func metricsOf(md pmetric.Metrics, _, _ []inventory.Series) pmetric.Metrics { return md }

// TestRetractionSurvivesARefusedBatch: a pipeline that refuses a batch (the OTLP
// overlay's sending queue when full) must not lose a retraction, or the series would
// stay on the endpoint until metric_expiration.
func TestRetractionSurvivesARefusedBatch(t *testing.T) {
	batches := make(chan pmetric.Metrics, 10)
	refused := false
	// The consumer runs on the emitter's goroutine: it only looks at the batch
	// (firstRetracted never fails the test) and leaves the assertions to the test's.
	next, err := consumer.NewMetrics(func(_ context.Context, md pmetric.Metrics) error {
		if !refused && firstRetracted(md) {
			refused = true
			return errors.New("data refused due to high memory usage")
		}
		batches <- md
		return nil
	})
	require.NoError(t, err)
	cfg := createDefaultConfig().(*Config)
	cfg.CollectionInterval = 20 * time.Millisecond
	cfg.NodeName = "n"
	r := newReceiver(receivertest.NewNopSettings(metadata.Type), cfg, next)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.emitLoop(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	// Every wait has a deadline, so that a lost retraction fails the test instead of
	// hanging it until go test's timeout (mutation: Inventory.Unsent dropping the
	// retractions failed with "no retraction within 10s").
	deadline := time.After(10 * time.Second)
	nextBatch := func(what string) pmetric.Metrics {
		t.Helper()
		select {
		case md := <-batches:
			return md
		case <-deadline:
			t.Fatalf("no %s within 10s", what)
			return pmetric.Metrics{}
		}
	}
	r.inventory.Put("default/my-vm", inventory.Record{Reported: hypervisor.KVM})
	require.Equal(t, []point{{"default", "my-vm", "n", "kvm", 1, false}}, points(t, nextBatch("series")))
	r.inventory.Delete("default/my-vm")
	for {
		if ps := points(t, nextBatch("retraction")); len(ps) > 0 && ps[0].retracted {
			require.True(t, refused, "the first retraction was not refused")
			require.Equal(t, []point{{"default", "my-vm", "n", "kvm", 0, true}}, ps)
			return
		}
	}
}

// firstRetracted says whether md's first point of the hypervisor metric is a
// retraction. Unlike points it asserts nothing, so any goroutine may call it.
func firstRetracted(md pmetric.Metrics) bool {
	rms := md.ResourceMetrics()
	for i := range rms.Len() {
		sms := rms.At(i).ScopeMetrics()
		for j := range sms.Len() {
			ms := sms.At(j).Metrics()
			for k := range ms.Len() {
				if m := ms.At(k); m.Name() == infoMetric && m.Gauge().DataPoints().Len() > 0 {
					return m.Gauge().DataPoints().At(0).Flags().NoRecordedValue()
				}
			}
		}
	}
	return false
}
