package testenv

import (
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"
)

// startKube starts an APIServer for one test and stops it at cleanup. Missing
// binaries fail the test rather than skip it: a silently skipped integration
// test is worse than a clear "run make kube-assets".
func startKube(t *testing.T) *APIServer {
	t.Helper()
	RequireDaemons(t, "etcd and kube-apiserver")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	begin := time.Now()
	a, err := StartAPIServer(ctx)
	if err != nil {
		t.Fatalf("StartAPIServer: %v", err)
	}
	t.Logf("control plane up in %v", time.Since(begin).Round(time.Millisecond))
	t.Cleanup(func() {
		if err := a.Stop(); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return a
}

func TestKubeVMILifecycle(t *testing.T) {
	a := startKube(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	procs := controlPlaneProcs(t, a.workDir)
	if len(procs) != 2 {
		t.Fatalf("found control plane processes %v, want etcd and kube-apiserver", procs)
	}

	const ns, name, node = "vm-ns", "vm-one", "worker-node-1"
	if err := a.CreateVMI(ctx, ns, name); err != nil {
		t.Fatal(err)
	}
	// A second VMI on another node must not match the selector.
	if err := a.CreateVMI(ctx, ns, "vm-two"); err != nil {
		t.Fatal(err)
	}
	if err := a.SetVMIStatus(ctx, ns, "vm-two", VMIStatus{Phase: "Running", NodeName: "worker-node-2"}); err != nil {
		t.Fatal(err)
	}

	qemuUser := int64(107)
	want := VMIStatus{
		Phase:       "Running",
		NodeName:    node,
		ActivePods:  map[string]string{"0b0e3c1a-pod-uid": node},
		RuntimeUser: &qemuUser,
	}
	if err := a.SetVMIStatus(ctx, ns, name, want); err != nil {
		t.Fatal(err)
	}

	// Read back the way the collector does: through the dynamic client,
	// filtered by the node label, across all namespaces.
	list, err := a.Dynamic.Resource(VMIResource).List(ctx, metav1.ListOptions{
		LabelSelector: NodeNameLabel + "=" + node,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 1 {
		t.Fatalf("selector %s=%s matched %d VMIs, want 1", NodeNameLabel, node, len(list.Items))
	}
	checkVMIStatus(t, &list.Items[0], ns, name, want)

	// Clearing the node removes the label too, as when a VMI leaves a node.
	if err := a.SetVMIStatus(ctx, ns, name, VMIStatus{Phase: "Succeeded"}); err != nil {
		t.Fatal(err)
	}
	vmi, err := a.Dynamic.Resource(VMIResource).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkVMIStatus(t, vmi, ns, name, VMIStatus{Phase: "Succeeded"})

	if err := a.DeleteVMI(ctx, ns, name); err != nil {
		t.Fatal(err)
	}
	if err := a.DeleteVMI(ctx, ns, name); err != nil {
		t.Fatalf("second DeleteVMI: %v", err)
	}
	list, err = a.Dynamic.Resource(VMIResource).Namespace(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 1 || list.Items[0].GetName() != "vm-two" {
		t.Fatalf("after delete: got %d VMIs, want only vm-two", len(list.Items))
	}

	workDir := a.workDir
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	// envtest waits for its children in Stop, so they must be gone already
	// (not even zombies); the poll only tolerates /proc lagging behind.
	err = wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 5*time.Second, true,
		func(context.Context) (bool, error) {
			return len(controlPlaneProcs(t, workDir)) == 0, nil
		})
	if err != nil {
		t.Errorf("processes left after Stop: %v", controlPlaneProcs(t, workDir))
	}
	if _, err := os.Stat(workDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("work dir %s left behind (stat: %v)", workDir, err)
	}
}

// TestKubeconfigForChildProcess checks the kubeconfig file on its own, as a
// collector started with KUBECONFIG=<path> would load it.
func TestKubeconfigForChildProcess(t *testing.T) {
	a := startKube(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	if err := a.CreateVMI(ctx, "default", "vm-kubeconfig"); err != nil {
		t.Fatal(err)
	}
	client := dynamicFromKubeconfig(t, a.KubeconfigPath)
	if _, err := client.Resource(VMIResource).Namespace("default").Get(ctx, "vm-kubeconfig", metav1.GetOptions{}); err != nil {
		t.Fatalf("get VMI through %s: %v", a.KubeconfigPath, err)
	}
}

// TestKubeUserWithoutRightsAndClusterWithoutKubeVirt checks the two states a collector
// can meet that StartAPIServer does not give: a user RBAC grants nothing, and an API
// server without the VMI CRD (and back with it).
func TestKubeUserWithoutRightsAndClusterWithoutKubeVirt(t *testing.T) {
	a := startKube(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	path, err := a.AddUser("nobody", "some-group")
	if err != nil {
		t.Fatal(err)
	}
	_, err = dynamicFromKubeconfig(t, path).Resource(VMIResource).List(ctx, metav1.ListOptions{})
	if !apierrors.IsForbidden(err) {
		t.Fatalf("listing VMIs as a user without rights: %v, want forbidden", err)
	}

	if err := a.UninstallCRDs(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Dynamic.Resource(VMIResource).List(ctx, metav1.ListOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("listing VMIs without the CRD: %v, want not found", err)
	}
	if err := a.InstallCRDs(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.CreateVMI(ctx, "default", "back"); err != nil {
		t.Fatalf("creating a VMI once the CRD is back: %v", err)
	}
}

func TestKubeRestartKeepsObjectsAndCredentials(t *testing.T) {
	a := startKube(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	if err := a.CreateVMI(ctx, "default", "survivor"); err != nil {
		t.Fatal(err)
	}
	if err := a.SetVMIStatus(ctx, "default", "survivor", VMIStatus{Phase: "Running", NodeName: "n1"}); err != nil {
		t.Fatal(err)
	}
	// Built before the restart, like a long-running collector's client.
	external := dynamicFromKubeconfig(t, a.KubeconfigPath)
	etcdPID := controlPlaneProcs(t, a.workDir)["etcd"]

	if err := a.StopKubeAPIServer(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Dynamic.Resource(VMIResource).List(ctx, metav1.ListOptions{}); err == nil {
		t.Fatal("listing VMIs succeeded while kube-apiserver was stopped")
	}
	begin := time.Now()
	if err := a.StartKubeAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("kube-apiserver back in %v", time.Since(begin).Round(time.Millisecond))

	if got := controlPlaneProcs(t, a.workDir)["etcd"]; got != etcdPID {
		t.Errorf("etcd pid changed from %d to %d; only kube-apiserver should restart", etcdPID, got)
	}
	for _, c := range []dynamic.Interface{a.Dynamic, external} {
		vmi, err := c.Resource(VMIResource).Namespace("default").Get(ctx, "survivor", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("get VMI after restart: %v", err)
		}
		checkVMIStatus(t, vmi, "default", "survivor", VMIStatus{Phase: "Running", NodeName: "n1"})
	}

	if err := a.Restart(ctx); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	if _, err := external.Resource(VMIResource).Namespace("default").Get(ctx, "survivor", metav1.GetOptions{}); err != nil {
		t.Fatalf("get VMI after Restart: %v", err)
	}
}

func TestKubeAssetsMissing(t *testing.T) {
	t.Setenv("KUBEBUILDER_ASSETS", t.TempDir())
	_, err := StartAPIServer(context.Background())
	if !errors.Is(err, ErrKubeAssetsMissing) {
		t.Fatalf("StartAPIServer with empty KUBEBUILDER_ASSETS: got %v, want ErrKubeAssetsMissing", err)
	}
	if !strings.Contains(err.Error(), "make kube-assets") {
		t.Errorf("error does not say how to get the assets: %v", err)
	}
}

// TestKubeVersionMatchesToolsModule guards against bumping the tools module
// without KubeVersion (or back): the harness would look in a cache directory
// the script no longer fills.
func TestKubeVersionMatchesToolsModule(t *testing.T) {
	gomod, err := findRepoPath("tools/kube/go.mod")
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(gomod)
	if err != nil {
		t.Fatal(err)
	}
	want := "k8s.io/kubernetes v" + KubeVersion
	for _, line := range strings.Split(string(data), "\n") {
		if strings.TrimSpace(line) == want || strings.HasPrefix(strings.TrimSpace(line), want+" ") {
			return
		}
	}
	t.Errorf("%s does not require %q; update KubeVersion or the tools module", filepath.ToSlash(gomod), want)
}

func checkVMIStatus(t *testing.T, vmi *unstructured.Unstructured, ns, name string, want VMIStatus) {
	t.Helper()
	if vmi.GetNamespace() != ns || vmi.GetName() != name {
		t.Fatalf("got VMI %s/%s, want %s/%s", vmi.GetNamespace(), vmi.GetName(), ns, name)
	}
	str := func(field string) string {
		s, _, err := unstructured.NestedString(vmi.Object, "status", field)
		if err != nil {
			t.Errorf("status.%s: %v", field, err)
		}
		return s
	}
	if got := str("phase"); got != want.Phase {
		t.Errorf("status.phase = %q, want %q", got, want.Phase)
	}
	if got := str("nodeName"); got != want.NodeName {
		t.Errorf("status.nodeName = %q, want %q", got, want.NodeName)
	}
	if got := vmi.GetLabels()[NodeNameLabel]; got != want.NodeName {
		t.Errorf("label %s = %q, want %q", NodeNameLabel, got, want.NodeName)
	}
	pods, _, err := unstructured.NestedStringMap(vmi.Object, "status", "activePods")
	if err != nil {
		t.Errorf("status.activePods: %v", err)
	}
	if !maps.Equal(pods, want.ActivePods) {
		t.Errorf("status.activePods = %v, want %v", pods, want.ActivePods)
	}
	user, found, err := unstructured.NestedInt64(vmi.Object, "status", "runtimeUser")
	switch {
	case err != nil:
		t.Errorf("status.runtimeUser: %v", err)
	case want.RuntimeUser == nil && found:
		t.Errorf("status.runtimeUser = %d, want absent", user)
	case want.RuntimeUser != nil && (!found || user != *want.RuntimeUser):
		t.Errorf("status.runtimeUser = %d (present: %v), want %d", user, found, *want.RuntimeUser)
	}
}

func dynamicFromKubeconfig(t *testing.T, path string) dynamic.Interface {
	t.Helper()
	// The same loading rules a child process gets with KUBECONFIG=<path>.
	rules := &clientcmd.ClientConfigLoadingRules{Precedence: []string{path}}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, nil).ClientConfig()
	if err != nil {
		t.Fatalf("load %s: %v", path, err)
	}
	c, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// controlPlaneProcs finds the processes started for the control plane in
// workDir, by their flags pointing into it, and returns their pids by program
// name. Scanning /proc rather than asking envtest (which keeps its exec.Cmd
// private) also catches processes that escaped envtest's bookkeeping.
func controlPlaneProcs(t *testing.T, workDir string) map[string]int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		Unavailable(t, "cannot list processes: %v", err)
	}
	procs := map[string]int{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !strings.Contains(string(cmdline), workDir+string(filepath.Separator)) {
			continue
		}
		argv0, _, _ := strings.Cut(string(cmdline), "\x00")
		procs[filepath.Base(argv0)] = pid
	}
	return procs
}
