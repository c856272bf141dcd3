package testenv

import (
	"context"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
)

// Warnings collects the warning headers an API server sends (deprecations, Pod
// Security, unknown fields); set it as a rest.Config's WarningHandler.
type Warnings struct {
	mu   sync.Mutex
	msgs []string
}

// HandleWarningHeader implements rest.WarningHandler.
func (w *Warnings) HandleWarningHeader(_ int, _ string, msg string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, msg)
}

// Messages returns the warnings received so far.
func (w *Warnings) Messages() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.msgs...)
}

// CheckVMIReader acts as the ServiceAccount saNamespace/saName, whose RBAC is applied
// already, and fails t unless it may do what the receiver does (list and watch its
// node's VMIs in all namespaces, get one) and is refused what it must not: delete a
// VMI, read pods, secrets and config maps of its namespace, nodes. It creates the VMI
// default/some-vm to try on.
func CheckVMIReader(ctx context.Context, t TB, api *APIServer, saNamespace, saName string) {
	t.Helper()
	if err := api.CreateVMI(ctx, "default", "some-vm"); err != nil {
		t.Fatalf("%v", err)
	}
	cfg := ServiceAccountConfig(api.Config, saNamespace, saName)
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatalf("%v", err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatalf("%v", err)
	}
	vmis := dyn.Resource(VMIResource)

	sel := metav1.ListOptions{LabelSelector: NodeNameLabel + "=worker-node-1"}
	if _, err := vmis.List(ctx, sel); err != nil {
		t.Errorf("the service account cannot list VMIs: %v", err)
	}
	if w, err := vmis.Watch(ctx, sel); err != nil {
		t.Errorf("the service account cannot watch VMIs: %v", err)
	} else {
		w.Stop()
	}
	if _, err := vmis.Namespace("default").Get(ctx, "some-vm", metav1.GetOptions{}); err != nil {
		t.Errorf("the service account cannot get a VMI: %v", err)
	}

	forbidden := map[string]error{}
	forbidden["delete a VMI"] = vmis.Namespace("default").Delete(ctx, "some-vm", metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}})
	_, forbidden["list pods"] = cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	_, forbidden["list secrets"] = cs.CoreV1().Secrets(saNamespace).List(ctx, metav1.ListOptions{})
	_, forbidden["list config maps"] = cs.CoreV1().ConfigMaps(saNamespace).List(ctx, metav1.ListOptions{})
	_, forbidden["list nodes"] = cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	for what, err := range forbidden {
		if !apierrors.IsForbidden(err) {
			t.Errorf("%s as the service account: err = %v, want forbidden", what, err)
		}
	}
}
