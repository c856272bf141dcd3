package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/vmi"
)

// cluster is the shared API server and an unthrottled client to fill it: client-go's
// default of 5 requests a second would take half an hour for 10000 VMIs.
type cluster struct {
	api    *testenv.APIServer
	client dynamic.Interface
}

var clusterFixture fixture[*cluster]

// sharedCluster returns the process's API server, started on first use.
func sharedCluster(b *testing.B) *cluster {
	return clusterFixture.get(b, startCluster)
}

func startCluster() (*cluster, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	api, err := testenv.StartAPIServer(ctx)
	if errors.Is(err, testenv.ErrKubeAssetsMissing) {
		return nil, skipError{err}
	}
	if err != nil {
		return nil, err
	}
	atExit(api.Stop)
	cfg := rest.CopyConfig(api.Config)
	cfg.QPS = -1 // no client-side rate limit
	client, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	for i := range 10 {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("bench-%d", i)}}
		if _, err := api.Clientset.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, err
		}
	}
	return &cluster{api: api, client: client}, nil
}

// vmis is the VMI resource of namespace ns.
func (c *cluster) vmis(ns string) dynamic.ResourceInterface {
	return c.client.Resource(vmi.Resource).Namespace(ns)
}

// createVMIs creates VMIs first..last-1 of set (see setVMI), labelled for node and in
// phase, with the status a real running VMI carries: its launcher pod, runtime user,
// conditions, guest interfaces and more that the receiver must drop. Existing ones are
// left alone, so fixtures can grow.
func (c *cluster) createVMIs(ctx context.Context, set string, first, last int, node, phase string) error {
	return parallel(last-first, 32, func(k int) error {
		ns, name := setVMI(set, first+k)
		_, err := c.vmis(ns).Create(ctx, realisticVMI(ns, name, node, phase, newUID()), metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return nil
		}
		return err
	})
}

// setVMI is the namespace and name of the i-th VMI of a named set: spread over ten
// namespaces, as on a cluster where many VMIs share a namespace.
func setVMI(set string, i int) (ns, name string) {
	return fmt.Sprintf("bench-%d", i%10), fmt.Sprintf("%s-%05d", set, i)
}

// setDomain is the libvirt domain name of setVMI(set, i).
func setDomain(set string, i int) string {
	ns, name := setVMI(set, i)
	return ns + "_" + name
}

// realisticVMI is a VMI as KubeVirt leaves it once running on node, give or take, its
// launcher pod podUID.
func realisticVMI(ns, name, node, phase, podUID string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "kubevirt.io/v1",
		"kind":       "VirtualMachineInstance",
		"metadata": map[string]any{
			"name": name, "namespace": ns,
			"labels": map[string]any{
				vmi.NodeLabel:             node,
				"kubevirt.io/created-by":  "6a4d1a7c-3b57-4ad5-8c3c-3cbd2d9f8f1e",
				"vm.kubevirt.io/name":     name,
				"kubevirt.io/domain":      name,
				"kubevirt.io/size":        "small",
				"app.kubernetes.io/part":  "bench",
				"app.kubernetes.io/owner": "bench",
			},
			"annotations": map[string]any{
				"kubevirt.io/latest-observed-api-version":  "v1",
				"kubevirt.io/storage-observed-api-version": "v1",
			},
		},
		"spec": map[string]any{"domain": map[string]any{
			"cpu":       map[string]any{"cores": int64(1)},
			"memory":    map[string]any{"guest": "1Gi"},
			"resources": map[string]any{"requests": map[string]any{"memory": "1Gi"}},
			"devices": map[string]any{
				"disks":      []any{map[string]any{"name": "containerdisk", "disk": map[string]any{"bus": "virtio"}}},
				"interfaces": []any{map[string]any{"name": "default", "masquerade": map[string]any{}}},
			},
		}},
		"status": map[string]any{
			"phase":       phase,
			"nodeName":    node,
			"activePods":  map[string]any{podUID: node},
			"runtimeUser": int64(107),
			"qosClass":    "Burstable",
			"conditions": []any{
				map[string]any{"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-22T00:00:00Z"},
				map[string]any{"type": "LiveMigratable", "status": "True"},
				map[string]any{"type": "AgentConnected", "status": "True"},
			},
			"interfaces": []any{map[string]any{
				"name": "default", "ipAddress": "10.244.1.23", "mac": "52:54:00:12:34:56",
				"interfaceName": "eth0", "infoSource": "domain, guest-agent",
			}},
			"guestOSInfo":                   map[string]any{"id": "fedora", "name": "Fedora Linux", "version": "40"},
			"launcherContainerImageVersion": "quay.io/kubevirt/virt-launcher:v1.6.0",
			"migrationMethod":               "BlockMigration",
			"migrationTransport":            "Unix",
			"selinuxContext":                "none",
			"volumeStatus":                  []any{map[string]any{"name": "containerdisk", "target": "vda"}},
		},
	}}
}

// setPhase patches the VMI's status.phase in one request, as virt-handler does.
func (c *cluster) setPhase(ctx context.Context, ns, name, phase string) error {
	patch := fmt.Appendf(nil, `{"status":{"phase":%q}}`, phase)
	_, err := c.vmis(ns).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
	return err
}

// newUID returns a random UUID in the API server's format, as pod UIDs are.
func newUID() string {
	var u [16]byte
	_, _ = rand.Read(u[:])
	h := hex.EncodeToString(u[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
