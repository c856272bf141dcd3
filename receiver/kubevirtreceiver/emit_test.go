package kubevirtreceiver

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/receiver/receivertest"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/hypervisor"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/series"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/metadata"
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
				require.Equal(t, "kubevirt.vmi.hypervisor.info", m.Name())
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

func TestBuildMetricsEmitsLiveSeriesAndOneRetractionPerMetric(t *testing.T) {
	mb := metadata.NewMetricsBuilder(metadata.DefaultMetricsBuilderConfig(), receivertest.NewNopSettings(metadata.Type))
	set := series.NewSet()
	now := pcommon.NewTimestampFromTime(time.Now())
	set.Put("default/my-vm", series.Series{Namespace: "default", Name: "my-vm", Node: "worker-node-1", Type: hypervisor.KVM})
	set.Put("default/tcg", series.Series{Namespace: "default", Name: "tcg", Node: "worker-node-1", Type: hypervisor.QEMUTCG})
	set.Put("prod/db", series.Series{Namespace: "prod", Name: "db", Node: "worker-node-1", Type: hypervisor.Unknown})

	assert.ElementsMatch(t, []point{
		{"default", "my-vm", "worker-node-1", "kvm", 1, false},
		{"default", "tcg", "worker-node-1", "qemu-tcg", 1, false},
		{"prod", "db", "worker-node-1", "unknown", 1, false},
	}, points(t, buildMetrics(mb, set, now)))

	set.Delete("default/tcg")
	set.Put("prod/db", series.Series{Namespace: "prod", Name: "db", Node: "worker-node-1", Type: hypervisor.MSHV})
	assert.ElementsMatch(t, []point{
		{"default", "my-vm", "worker-node-1", "kvm", 1, false},
		{"prod", "db", "worker-node-1", "mshv", 1, false},
		{"default", "tcg", "worker-node-1", "qemu-tcg", 0, true},
		{"prod", "db", "worker-node-1", "unknown", 0, true},
	}, points(t, buildMetrics(mb, set, now)))

	set.Delete("default/my-vm")
	set.Delete("prod/db")
	assert.ElementsMatch(t, []point{
		{"default", "my-vm", "worker-node-1", "kvm", 0, true},
		{"prod", "db", "worker-node-1", "mshv", 0, true},
	}, points(t, buildMetrics(mb, set, now)))

	assert.Zero(t, buildMetrics(mb, set, now).DataPointCount(), "nothing to say once everything is retracted")
}

func TestBuildMetricsHonoursDisabledMetric(t *testing.T) {
	cfg := metadata.DefaultMetricsBuilderConfig()
	cfg.Metrics.KubevirtVmiHypervisorInfo.Enabled = false
	mb := metadata.NewMetricsBuilder(cfg, receivertest.NewNopSettings(metadata.Type))
	set := series.NewSet()
	set.Put("default/my-vm", series.Series{Namespace: "default", Name: "my-vm", Node: "n", Type: hypervisor.KVM})
	set.Take()
	set.Delete("default/my-vm")
	assert.Zero(t, buildMetrics(mb, set, pcommon.NewTimestampFromTime(time.Now())).DataPointCount())
}
