package manifests

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv"
)

const fieldManager = "otelcol-kubevirt-manifests-test"

// TestManifestsServerSideDryRun applies every manifest with server-side dry run to
// a real kube-apiserver (with KubeVirt's VMI CRD), expecting no error and no
// warning, then checks for real that the ClusterRole lets the service account
// read VMIs and nothing else.
func TestManifestsServerSideDryRun(t *testing.T) {
	api := testenv.MustStartAPIServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var warned testenv.Warnings
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
	if msgs := warned.Messages(); len(msgs) > 0 {
		t.Errorf("the API server warned: %q", msgs)
	}

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
	var sa corev1.ServiceAccount
	typed(t, ms, "ServiceAccount", &sa)
	testenv.CheckVMIReader(ctx, t, api, sa.Namespace, sa.Name)
}
