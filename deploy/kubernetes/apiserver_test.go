package manifests

import (
	"context"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv"
)

const fieldManager = "otelcol-kubevirt-manifests-test"

// warnings collects the API server's warning headers (deprecations, Pod Security).
type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) HandleWarningHeader(_ int, _ string, msg string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, msg)
}

// TestManifestsServerSideDryRun applies every manifest with server-side dry run to
// a real kube-apiserver (with KubeVirt's VMI CRD), expecting no error and no
// warning, then checks for real that the ClusterRole lets the service account
// read VMIs and nothing else.
func TestManifestsServerSideDryRun(t *testing.T) {
	api := testenv.MustStartAPIServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var warned warnings
	cfg := rest.CopyConfig(api.Config)
	cfg.WarningHandler = &warned
	a, err := testenv.NewApplier(cfg, fieldManager)
	if err != nil {
		t.Fatal(err)
	}
	ms := loadManifests(t)

	// Namespaced objects are only admitted into an existing namespace, and a dry-run
	// namespace does not exist afterwards: create it for real first.
	if _, err := a.Apply(ctx, find(t, ms, "Namespace"), false); err != nil {
		t.Fatalf("creating the namespace: %v", err)
	}
	for _, m := range ms {
		got, err := a.Apply(ctx, m.obj, true)
		if err != nil {
			t.Errorf("%s: %s %s: dry run: %v", m.file, m.obj.GetKind(), m.obj.GetName(), err)
			continue
		}
		if got.GetKind() != m.obj.GetKind() || got.GetName() != m.obj.GetName() {
			t.Errorf("dry run of %s %s returned %s %s", m.obj.GetKind(), m.obj.GetName(), got.GetKind(), got.GetName())
		}
	}
	// Dry run stored nothing.
	if _, err := api.Clientset.AppsV1().DaemonSets(namespace).Get(ctx, "otelcol-kubevirt", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("DaemonSet after dry run: err = %v, want not found", err)
	}
	warned.mu.Lock()
	if len(warned.msgs) > 0 {
		t.Errorf("the API server warned: %q", warned.msgs)
	}
	warned.mu.Unlock()

	checkRBAC(ctx, t, api, a, ms)
}

// checkRBAC applies the RBAC objects for real and acts as the service account.
func checkRBAC(ctx context.Context, t *testing.T, api *testenv.APIServer, a *testenv.Applier, ms []manifest) {
	t.Helper()
	for _, kind := range []string{"ServiceAccount", "ClusterRole", "ClusterRoleBinding"} {
		if _, err := a.Apply(ctx, find(t, ms, kind), false); err != nil {
			t.Fatalf("applying %s: %v", kind, err)
		}
	}
	if err := api.CreateVMI(ctx, "default", "some-vm"); err != nil {
		t.Fatal(err)
	}
	var sa corev1.ServiceAccount
	typed(t, ms, "ServiceAccount", &sa)
	cfg := testenv.ServiceAccountConfig(api.Config, sa.Namespace, sa.Name)
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	vmis := dyn.Resource(testenv.VMIResource)

	// What the receiver does: list and watch the VMIs of its node, in all namespaces.
	sel := metav1.ListOptions{LabelSelector: testenv.NodeNameLabel + "=worker-node-1"}
	if _, err := vmis.List(ctx, sel); err != nil {
		t.Errorf("the service account cannot list VMIs: %v", err)
	}
	w, err := vmis.Watch(ctx, sel)
	if err != nil {
		t.Errorf("the service account cannot watch VMIs: %v", err)
	} else {
		w.Stop()
	}
	if _, err := vmis.Namespace("default").Get(ctx, "some-vm", metav1.GetOptions{}); err != nil {
		t.Errorf("the service account cannot get a VMI: %v", err)
	}

	// And nothing else.
	forbidden := map[string]error{}
	forbidden["delete VMIs"] = vmis.Namespace("default").Delete(ctx, "some-vm", metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}})
	_, forbidden["list pods"] = cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	_, forbidden["list secrets"] = cs.CoreV1().Secrets(namespace).List(ctx, metav1.ListOptions{})
	_, forbidden["get nodes"] = cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	_, forbidden["list configmaps"] = cs.CoreV1().ConfigMaps(namespace).List(ctx, metav1.ListOptions{})
	for what, err := range forbidden {
		if !apierrors.IsForbidden(err) {
			t.Errorf("%s as the service account: err = %v, want forbidden", what, err)
		}
	}
}
