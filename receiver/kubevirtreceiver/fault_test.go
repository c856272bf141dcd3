package kubevirtreceiver

// Faults around the receiver, each against a real kube-apiserver: it restarts, a watch
// expires and must be relisted, VMIs arrive malformed, the configuration is invalid.
// After each, the series equal the truth and no goroutine is left behind. (libvirtd
// killed and restarted is TestLibvirtdOutageKeepsKnownTypesAndRecovers.)

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.uber.org/goleak"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/libvirtconn"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/vmi"
)

func TestAPIServerRestartKeepsSeriesAndFollowsNewChanges(t *testing.T) {
	verifyNoLeaks(t)
	api := startAPIServer(t)
	proxy := startAPIProxy(t, api)
	uri := testDriverNode(t, map[string]string{"default_a": "kvm", "default_b": "qemu", "default_c": "hyperv"})
	var batches atomic.Int64
	logs, observe := observeLogs()
	_, v := startReceiver(t, api, nodeA, uri, func(r *kubevirtReceiver) {
		t.Setenv("KUBECONFIG", proxy.Kubeconfig)
		countBatches(&batches)(r)
		observe(r)
	})
	ctx := context.Background()

	runVMI(t, api, "default", "a", nodeA)
	runVMI(t, api, "default", "b", nodeA)
	known := map[string]string{"default/a": "kvm", "default/b": "qemu-tcg"}
	waitView(t, v, known, 10*time.Second)
	waitSelf(t, v, syncedMetric, soon, func(x float64) bool { return x == 1 })

	// kube-apiserver stops. It does not stop while a watch is open (it waits for it
	// past envtest's stop timeout), so the proxy ends the receiver's watch first, as a
	// stopping server would, and then answers 502 while the server is away. Meanwhile
	// the receiver keeps what it knows and goes on emitting it (every second here).
	proxy.Cut()
	require.NoError(t, api.StopKubeAPIServer())
	proxy.Restore()
	n := batches.Load()
	waitFor(t, "two emissions during the outage", func() bool { return batches.Load() >= n+2 })
	require.Equal(t, known, v.snapshot())
	// ...and says, in its log and its metrics, that they may be stale.
	e := waitLog(t, logs, watchFailed, soon)
	require.Equal(t, "unreachable", e.ContextMap()["reason"])
	waitSelf(t, v, syncedMetric, soon, func(x float64) bool { return x == 0 })

	// Back with the same etcd: changes made from now on are followed.
	startCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	require.NoError(t, api.StartKubeAPIServer(startCtx))
	runVMI(t, api, "default", "c", nodeA)
	require.NoError(t, api.SetVMIStatus(ctx, "default", "a", testenv.VMIStatus{Phase: "Succeeded", NodeName: nodeA}))
	// The reflector backs off while the server is away (up to seconds), hence the wait.
	waitView(t, v, map[string]string{"default/b": "qemu-tcg", "default/c": "mshv"}, 30*time.Second)
	checkWatchRecovered(t, logs, v)
}

// TestExpiredWatchRelistsWhatChangedMeanwhile cuts the receiver off the API server,
// changes VMIs behind its back, and restarts kube-apiserver, whose new watch cache
// starts after those changes: the receiver's watch cannot resume from its last
// resourceVersion ("too old resource version") and it must list again, seeing a
// deletion it never got an event for.
func TestExpiredWatchRelistsWhatChangedMeanwhile(t *testing.T) {
	verifyNoLeaks(t)
	api := startAPIServer(t)
	proxy := startAPIProxy(t, api)
	uri := testDriverNode(t, map[string]string{
		"default_keep": "kvm", "default_stop": "qemu", "default_gone": "qemu", "default_new": "hyperv",
	})
	_, v := startReceiver(t, api, nodeA, uri, func(*kubevirtReceiver) { t.Setenv("KUBECONFIG", proxy.Kubeconfig) })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	for _, name := range []string{"keep", "stop", "gone"} {
		runVMI(t, api, "default", name, nodeA)
	}
	waitView(t, v, map[string]string{"default/keep": "kvm", "default/stop": "qemu-tcg", "default/gone": "qemu-tcg"}, 10*time.Second)

	proxy.Cut()
	require.NoError(t, api.SetVMIStatus(ctx, "default", "stop", testenv.VMIStatus{Phase: "Succeeded", NodeName: nodeA}))
	require.NoError(t, api.DeleteVMI(ctx, "default", "gone"))
	runVMI(t, api, "default", "new", nodeA)
	require.NoError(t, api.Restart(ctx))
	// Cut off, the receiver cannot list: every list counted from here on comes after
	// the cut.
	lists := proxy.Lists.Load()
	proxy.Restore()

	waitView(t, v, map[string]string{"default/keep": "kvm", "default/new": "mshv"}, 30*time.Second)
	require.Positive(t, proxy.Expired.Load(), "no watch was refused as too old")
	require.Greater(t, proxy.Lists.Load(), lists, "the receiver did not list again")
}

// TestMalformedVMIsAffectNoOtherVMI sends VMIs whose status is missing, mistyped or
// nonsense (through apiProxy, as the CRD's schema keeps mistyped ones out of etcd)
// beside good ones. The receiver reads what it can: a VMI whose phase or node cannot
// be read is not reported, one with an unreadable optional field (activePods,
// runtimeUser, conditions) is reported from the rest.
func TestMalformedVMIsAffectNoOtherVMI(t *testing.T) {
	verifyNoLeaks(t)
	api := startAPIServer(t)
	proxy := startAPIProxy(t, api)
	statuses := map[string]struct {
		status   string // sent as the VMI's status; "" sends none
		reported bool
	}{
		"good-1":            {`{"phase":"Running","nodeName":"node-a"}`, true},
		"good-2":            {`{"phase":"Running","nodeName":"node-a","activePods":{"p1":"node-a"},"runtimeUser":107}`, true},
		"no-status":         {"", false},
		"status-null":       {`null`, false},
		"status-string":     {`"Running"`, false},
		"status-list":       {`["Running","node-a"]`, false},
		"no-phase":          {`{"nodeName":"node-a"}`, false},
		"phase-number":      {`{"phase":42,"nodeName":"node-a"}`, false},
		"phase-object":      {`{"phase":{"Running":true},"nodeName":"node-a"}`, false},
		"node-list":         {`{"phase":"Running","nodeName":["node-a"]}`, false},
		"node-empty":        {`{"phase":"Running","nodeName":""}`, false},
		"pods-string":       {`{"phase":"Running","nodeName":"node-a","activePods":"p1"}`, true},
		"pods-numbers":      {`{"phase":"Running","nodeName":"node-a","activePods":{"p1":5}}`, true},
		"pods-deep":         {`{"phase":"Running","nodeName":"node-a","activePods":{"p1":{"a":[1,{"b":null}]}}}`, true},
		"user-string":       {`{"phase":"Running","nodeName":"node-a","runtimeUser":"107"}`, true},
		"user-float":        {`{"phase":"Running","nodeName":"node-a","runtimeUser":1.5e300}`, true},
		"conditions-junk":   {`{"phase":"Running","nodeName":"node-a","conditions":[1,"Paused",null,{"type":5,"status":true}]}`, true},
		"conditions-object": {`{"phase":"Running","nodeName":"node-a","conditions":{"type":"Paused","status":"True"}}`, true},
	}
	domains := map[string]string{}
	for name := range statuses {
		domains["default_"+name] = "qemu" // every VMI has a domain: what decides is its status
	}
	uri := testDriverNode(t, domains)
	_, v := startReceiver(t, api, nodeA, uri, func(*kubevirtReceiver) { t.Setenv("KUBECONFIG", proxy.Kubeconfig) })

	want := map[string]string{}
	for name, s := range statuses {
		createVMIWithStatus(t, api, name, s.status)
		if s.reported {
			want["default/"+name] = "qemu-tcg"
		}
	}
	waitView(t, v, want, 10*time.Second)
	require.Positive(t, proxy.Rewritten.Load(), "the proxy replaced no status")

	// Malformed VMIs do not hold back changes to good ones, nor to themselves.
	require.NoError(t, api.DeleteVMI(context.Background(), "default", "good-1"))
	setStatusOverride(t, api, "phase-number", `{"phase":"Running","nodeName":"node-a"}`)
	setStatusOverride(t, api, "pods-string", `{"phase":"Succeeded","nodeName":"node-a","activePods":"p1"}`)
	delete(want, "default/good-1")
	delete(want, "default/pods-string")
	want["default/phase-number"] = "qemu-tcg"
	waitView(t, v, want, 10*time.Second)
}

// TestInvalidConfigNamesTheKeyForEveryKind adds to TestInvalidConfigNamesTheKey the
// values that fail before Validate: wrong types and unparsable durations, where the
// collector's configuration decoding must still name the key, and the keys that
// mdatagen generates.
func TestInvalidConfigNamesTheKeyForEveryKind(t *testing.T) {
	tests := []struct {
		key  string
		conf map[string]any
	}{
		{"node_name", map[string]any{"node_name": []any{"a", "b"}}},
		{"auth_type", map[string]any{"auth_type": map[string]any{"kind": "token"}}},
		{"context", map[string]any{"auth_type": "kubeConfig", "context": []any{"lab"}}},
		{"collection_interval", map[string]any{"collection_interval": "soon"}},
		{"collection_interval", map[string]any{"collection_interval": true}},
		{"libvirt", map[string]any{"libvirt": "qemu:///system"}},
		{"libvirt.source", map[string]any{"libvirt": map[string]any{"source": ""}}},
		{"libvirt.source", map[string]any{"libvirt": map[string]any{"source": []any{"uri"}}}},
		{"libvirt.uri", map[string]any{"libvirt": map[string]any{"source": "uri", "uri": map[string]any{}}}},
		{"libvirt.pods_dir", map[string]any{"libvirt": map[string]any{"pods_dir": 7.5}}},
		{"libvirt.timeout", map[string]any{"libvirt": map[string]any{"timeout": "-1s"}}},
		{"libvirt.timeout", map[string]any{"libvirt": map[string]any{"timeout": "fast"}}},
		{"kubevirt.vmi.hypervisor.info", map[string]any{"metrics": map[string]any{"kubevirt.vmi.hypervisor.info": map[string]any{"enabled": "maybe"}}}},
		{"kubevirt.vmi.hypervisor.detection.failures", map[string]any{"metrics": map[string]any{"kubevirt.vmi.hypervisor.detection.failures": map[string]any{"enabled": []any{}}}}},
		{"kubevirt.vmi.hypervisor.nonexistent", map[string]any{"metrics": map[string]any{"kubevirt.vmi.hypervisor.nonexistent": map[string]any{"enabled": true}}}},
		{"k8s.node.name", map[string]any{"resource_attributes": map[string]any{"k8s.node.name": map[string]any{"enabled": "yes please"}}}},
		{"no_such_key", map[string]any{"no_such_key": 1}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s=%v", tt.key, tt.conf), func(t *testing.T) {
			conf := map[string]any{"node_name": "worker-node-1"}
			for k, v := range tt.conf {
				conf[k] = v
			}
			cfg := createDefaultConfig()
			err := confmap.NewFromStringMap(conf).Unmarshal(cfg)
			if err == nil {
				err = confmap.Validate(cfg)
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.key)
		})
	}
}

// verifyNoLeaks fails the test if goroutines it started outlive it. Registered first,
// it runs after every other cleanup: receivers shut down, servers stopped.
func verifyNoLeaks(t *testing.T) {
	opts := []goleak.Option{goleak.IgnoreCurrent(), goleak.IgnoreAnyFunction(libvirtconn.EventLoopFunction)}
	t.Cleanup(func() { goleak.VerifyNone(t, opts...) })
}

// testDriverNode writes a libvirt test-driver node whose domains (name -> domain type)
// all run, and returns its URI.
func testDriverNode(t *testing.T, domains map[string]string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("<node>\n")
	for name, typ := range domains {
		fmt.Fprintf(&b, "<domain type=%q><name>%s</name><memory>65536</memory><os><type arch='x86_64'>hvm</type></os></domain>\n", typ, name)
	}
	b.WriteString("</node>\n")
	path := filepath.Join(t.TempDir(), "node.xml")
	require.NoError(t, os.WriteFile(path, []byte(b.String()), 0o600))
	return "test://" + path
}

// countBatches is a tweak for startReceiver that counts the batches the receiver emits.
func countBatches(n *atomic.Int64) func(*kubevirtReceiver) {
	return func(r *kubevirtReceiver) {
		next := r.next
		r.next, _ = consumer.NewMetrics(func(ctx context.Context, md pmetric.Metrics) error {
			n.Add(1)
			return next.ConsumeMetrics(ctx, md)
		})
	}
}

// createVMIWithStatus creates default/name labelled for nodeA. status, unless "", is
// the JSON apiProxy sends as its status; what is stored is a plain Running status.
func createVMIWithStatus(t *testing.T, api *testenv.APIServer, name, status string) {
	t.Helper()
	obj := map[string]any{
		"apiVersion": "kubevirt.io/v1",
		"kind":       "VirtualMachineInstance",
		"metadata": map[string]any{
			"namespace": "default", "name": name,
			"labels": map[string]any{vmi.NodeLabel: nodeA},
		},
		"spec": map[string]any{"domain": map[string]any{"devices": map[string]any{}}},
	}
	if status != "" {
		obj["metadata"].(map[string]any)["annotations"] = map[string]any{statusOverride: status}
		obj["status"] = map[string]any{"phase": "Running", "nodeName": nodeA}
	}
	_, err := api.Dynamic.Resource(vmi.Resource).Namespace("default").
		Create(context.Background(), &unstructured.Unstructured{Object: obj}, metav1.CreateOptions{})
	require.NoError(t, err)
}

// setStatusOverride changes the status apiProxy sends for default/name.
func setStatusOverride(t *testing.T, api *testenv.APIServer, name, status string) {
	t.Helper()
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, statusOverride, status)
	_, err := api.Dynamic.Resource(vmi.Resource).Namespace("default").
		Patch(context.Background(), name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	require.NoError(t, err)
}
