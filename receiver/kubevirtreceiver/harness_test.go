package kubevirtreceiver

import (
	"context"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/receiver/receivertest"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/kube"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/metadata"
)

// view is what a Prometheus exporter would show for one receiver: it applies each batch,
// adding live points and dropping retracted ones. Keys are namespace/name, values the
// hypervisor type.
type view struct {
	mu  sync.Mutex
	cur map[string]string
	// self holds the last value of every other metric's points, keyed by the metric's
	// name, followed by {reason} for those that have one.
	self map[string]float64
}

func newView() *view { return &view{cur: map[string]string{}, self: map[string]float64{}} }

func (v *view) consume(_ context.Context, md pmetric.Metrics) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	rms := md.ResourceMetrics()
	for i := range rms.Len() {
		sms := rms.At(i).ScopeMetrics()
		for j := range sms.Len() {
			ms := sms.At(j).Metrics()
			for k := range ms.Len() {
				if ms.At(k).Name() != infoMetric {
					v.record(ms.At(k))
					continue
				}
				dps := ms.At(k).Gauge().DataPoints()
				for l := range dps.Len() {
					attrs := dps.At(l).Attributes().AsRaw()
					key := attrs["namespace"].(string) + "/" + attrs["name"].(string)
					if dps.At(l).Flags().NoRecordedValue() {
						if v.cur[key] == attrs["hypervisor_type"] {
							delete(v.cur, key)
						}
						continue
					}
					v.cur[key] = attrs["hypervisor_type"].(string)
				}
			}
		}
	}
	return nil
}

// record keeps the values of a self-metric's number points.
func (v *view) record(m pmetric.Metric) {
	var dps pmetric.NumberDataPointSlice
	switch m.Type() {
	case pmetric.MetricTypeGauge:
		dps = m.Gauge().DataPoints()
	case pmetric.MetricTypeSum:
		dps = m.Sum().DataPoints()
	default:
		return
	}
	for i := range dps.Len() {
		key := m.Name()
		if reason, ok := dps.At(i).Attributes().Get("reason"); ok {
			key += "{" + reason.Str() + "}"
		}
		if dps.At(i).ValueType() == pmetric.NumberDataPointValueTypeDouble {
			v.self[key] = dps.At(i).DoubleValue()
		} else {
			v.self[key] = float64(dps.At(i).IntValue())
		}
	}
}

// selfMetric is the last value of a self-metric (see view.self), and whether any was sent.
func (v *view) selfMetric(key string) (float64, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	x, ok := v.self[key]
	return x, ok
}

// waitSelf polls until the self-metric key has been sent with a value that satisfies ok.
func waitSelf(t *testing.T, v *view, key string, within time.Duration, ok func(float64) bool) float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var x float64
	if err := wait.PollUntilContextCancel(ctx, 10*time.Millisecond, true, func(context.Context) (bool, error) {
		var sent bool
		x, sent = v.selfMetric(key)
		return sent && ok(x), nil
	}); err != nil {
		last, sent := v.selfMetric(key)
		t.Fatalf("%s: last value %v (sent: %v) did not satisfy the test within %v", key, last, sent, within)
	}
	return x
}

// holdView fails the test if the view differs from want at any look within d. It
// samples the view; it synchronises nothing, so it follows a wait that did.
func holdView(t *testing.T, v *view, want map[string]string, d time.Duration) {
	t.Helper()
	for end := time.Now().Add(d); ; {
		if got := v.snapshot(); !maps.Equal(got, want) {
			t.Fatalf("series = %v, want %v to hold for %v", got, want, d)
		}
		if time.Now().After(end) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (v *view) snapshot() map[string]string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return maps.Clone(v.cur)
}

// waitView polls until the view equals want.
func waitView(t *testing.T, v *view, want map[string]string, within time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	if err := wait.PollUntilContextCancel(ctx, 10*time.Millisecond, true, func(context.Context) (bool, error) { return maps.Equal(v.snapshot(), want), nil }); err != nil {
		t.Fatalf("series = %v, want %v (after %v)", v.snapshot(), want, within)
	}
}

// startAPIServer is testenv.MustStartAPIServer, skipped with -short, so that
// `go test -short` of this package runs the tests that need no real part
// (sync_test.go's decision table, emission, configuration, README) in seconds.
func startAPIServer(t *testing.T) *testenv.APIServer {
	t.Helper()
	if testing.Short() {
		t.Skip("skipping with -short: needs a real kube-apiserver")
	}
	return testenv.MustStartAPIServer(t)
}

// startReceiver runs a receiver for node against the API server and libvirt at uri.
// tweak, if not nil, adjusts it before Start.
func startReceiver(t *testing.T, api *testenv.APIServer, node, uri string, tweak func(*kubevirtReceiver)) (*kubevirtReceiver, *view) {
	t.Helper()
	return startReceiverWith(t, api, node, LibvirtConfig{Source: SourceURI, URI: uri}, tweak)
}

// startReceiverWith is startReceiver with any libvirt settings; a zero timeout means
// the default.
func startReceiverWith(t *testing.T, api *testenv.APIServer, node string, lc LibvirtConfig, tweak func(*kubevirtReceiver)) (*kubevirtReceiver, *view) {
	t.Helper()
	t.Setenv("KUBECONFIG", api.KubeconfigPath)
	cfg := createDefaultConfig().(*Config)
	cfg.NodeName = node
	cfg.AuthType = kube.AuthKubeConfig
	if lc.Timeout == 0 {
		lc.Timeout = cfg.Libvirt.Timeout
	}
	cfg.Libvirt = lc
	cfg.CollectionInterval = time.Second
	require.NoError(t, cfg.Validate())

	v := newView()
	next, err := consumer.NewMetrics(v.consume)
	require.NoError(t, err)
	r := newReceiver(receivertest.NewNopSettings(metadata.Type), cfg, next)
	if tweak != nil {
		tweak(r)
	}
	require.NoError(t, r.Start(context.Background(), componenttest.NewNopHost()))
	t.Cleanup(func() { require.NoError(t, r.Shutdown(context.Background())) })
	return r, v
}

func runVMI(t *testing.T, api *testenv.APIServer, ns, name, node string) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, api.CreateVMI(ctx, ns, name))
	require.NoError(t, api.SetVMIStatus(ctx, ns, name, testenv.VMIStatus{Phase: "Running", NodeName: node}))
}

// setPaused sets or clears the VMI's Paused condition, as virt-handler does on pause
// and unpause; the phase stays Running.
func setPaused(t *testing.T, api *testenv.APIServer, ns, name string, paused bool) {
	t.Helper()
	var conds []any
	if paused {
		conds = []any{map[string]any{"type": "Paused", "status": "True", "reason": "PausedByUser"}}
	}
	setStatusField(t, api, ns, name, conds, "conditions")
}

// setStatusField sets the VMI's status field at path to value, keeping the rest.
func setStatusField(t *testing.T, api *testenv.APIServer, ns, name string, value any, path ...string) {
	t.Helper()
	ctx := context.Background()
	vmis := api.Dynamic.Resource(testenv.VMIResource).Namespace(ns)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		u, err := vmis.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if err := unstructured.SetNestedField(u.Object, value, append([]string{"status"}, path...)...); err != nil {
			return err
		}
		_, err = vmis.Update(ctx, u, metav1.UpdateOptions{})
		return err
	})
	require.NoError(t, err)
}

// detections is how many detections the receiver has run so far: the count of its
// duration histogram.
func detections(r *kubevirtReceiver) uint64 {
	ms := pmetric.NewMetricSlice()
	r.stats.duration.AppendTo(ms, durationMetric, durationDesc, 0)
	if ms.Len() == 0 {
		return 0
	}
	return ms.At(0).Histogram().DataPoints().At(0).Count()
}

// detectionsOf is how many times the receiver has detected the type of key, from its
// debug log.
func detectionsOf(logs *observer.ObservedLogs, key string) int {
	return logs.FilterMessage("Detected hypervisor").FilterField(zap.String("vmi", key)).Len()
}

// currentType is the type of the series in the receiver's record of key, "" if it has
// none.
func currentType(r *kubevirtReceiver, key string) string {
	rec, _ := r.inventory.Get(key)
	return string(rec.Reported)
}
