package testenv

// APIServer: etcd and kube-apiserver through envtest, with KubeVirt's VMI CRD;
// stopping, restarting and breaking them (users without rights, CRDs removed);
// creating VMIs and setting their status as KubeVirt does. KubeAssetsDir says
// where the binaries come from, findRepoPath finds repository files.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// KubeVersion is the Kubernetes release whose kube-apiserver the harness runs.
// It must match k8s.io/kubernetes in tools/kube/go.mod, which is what
// hack/kube-assets.sh builds; a test in this package checks that.
const KubeVersion = "1.36.3"

// NodeNameLabel is the label KubeVirt keeps equal to a VMI's status.nodeName so
// that each virt-handler can watch only the VMIs on its own node.
const NodeNameLabel = "kubevirt.io/nodeName"

// VMIResource identifies KubeVirt VirtualMachineInstances for the dynamic client.
var VMIResource = schema.GroupVersionResource{Group: "kubevirt.io", Version: "v1", Resource: "virtualmachineinstances"}

// ErrKubeAssetsMissing is returned (wrapped) by StartAPIServer when kube-apiserver
// or etcd is not where the harness looks for them. Callers may test for it with
// errors.Is, e.g. to skip rather than fail.
var ErrKubeAssetsMissing = errors.New("kube assets missing")

const (
	// startTimeout bounds each of etcd and kube-apiserver becoming healthy. It
	// is well above what they need (a few seconds) because a loaded CI runner
	// with two cores running -race tests beside them is much slower; envtest's
	// own default of 20s has proven tight there.
	startTimeout = 60 * time.Second
	stopTimeout  = 20 * time.Second

	// crdRelPath locates the CRD manifests relative to the repository root.
	crdRelPath = "testdata/crds"
)

// APIServer is a throwaway Kubernetes control plane: etcd plus kube-apiserver,
// started through controller-runtime's envtest, with KubeVirt's
// VirtualMachineInstance CRD installed. There are no controllers, scheduler or
// kubelets: objects only change when the caller changes them, which is how
// tests stand in for KubeVirt.
//
// Everything lives in a private temporary directory removed by Stop, so
// several instances can run side by side.
type APIServer struct {
	// Config authenticates as a cluster admin (group system:masters). It stays
	// valid across Restart.
	Config *rest.Config
	// KubeconfigPath is a kubeconfig file with the same credentials and CA,
	// for separate processes (KUBECONFIG=<path>). It stays valid across Restart.
	KubeconfigPath string
	// Dynamic is a dynamic client built from Config.
	Dynamic dynamic.Interface
	// Clientset is a typed client built from Config, for core objects such as
	// namespaces.
	Clientset kubernetes.Interface

	// mu serialises the lifecycle methods (Stop, Restart and friends).
	mu      sync.Mutex
	env     *envtest.Environment
	workDir string
	crdDir  string
	// logs receive the processes' output. They stay open until Stop because
	// StartKubeAPIServer hands them to a new kube-apiserver process.
	logs    []*os.File
	stopped bool
}

// StartAPIServer starts etcd and kube-apiserver, installs the CRDs from
// testdata/crds and returns once VirtualMachineInstances are served.
//
// The binaries are taken from $KUBEBUILDER_ASSETS, else from the cache that
// hack/kube-assets.sh (make kube-assets) fills. They are never built here: a
// cold build takes minutes and would silently stall a test run. When they are
// missing the error wraps ErrKubeAssetsMissing and says how to produce them.
//
// The caller must call Stop, also on test failure, or etcd and kube-apiserver
// outlive the process.
func StartAPIServer(ctx context.Context) (_ *APIServer, err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	assets, err := KubeAssetsDir()
	if err != nil {
		return nil, err
	}
	crdDir, err := findRepoPath(crdRelPath)
	if err != nil {
		return nil, err
	}
	workDir, err := os.MkdirTemp("", "testenv-kube-")
	if err != nil {
		return nil, err
	}
	var logs []*os.File
	defer func() {
		if err != nil {
			for _, f := range logs {
				_ = f.Close()
			}
			_ = os.RemoveAll(workDir)
		}
	}()
	for _, name := range []string{"etcd.log", "kube-apiserver.log"} {
		f, err := os.Create(filepath.Join(workDir, name))
		if err != nil {
			return nil, err
		}
		logs = append(logs, f)
	}
	etcdLog, kasLog := logs[0], logs[1]

	env := &envtest.Environment{
		ControlPlane: envtest.ControlPlane{
			Etcd: &envtest.Etcd{
				Path: filepath.Join(assets, "etcd"),
				// Directories we own rather than envtest's self-cleaning
				// temporary ones: envtest deletes those on Stop and creates
				// fresh ones (with a fresh serving CA) on the next Start,
				// which would make Restart invalidate Config and the
				// kubeconfig.
				DataDir: filepath.Join(workDir, "etcd"),
				Out:     etcdLog,
				Err:     etcdLog,
			},
			APIServer: &envtest.APIServer{
				Path:    filepath.Join(assets, "kube-apiserver"),
				CertDir: filepath.Join(workDir, "kube-apiserver"),
				Out:     kasLog,
				Err:     kasLog,
			},
		},
		CRDDirectoryPaths:        []string{crdDir},
		ErrorIfCRDPathMissing:    true,
		ControlPlaneStartTimeout: startTimeoutFor(ctx),
		ControlPlaneStopTimeout:  stopTimeout,
	}
	if err := os.Mkdir(env.ControlPlane.APIServer.CertDir, 0o700); err != nil {
		return nil, err
	}

	cfg, err := env.Start()
	if err != nil {
		// env.Start may fail after launching the processes (e.g. while
		// installing CRDs); stop them before reporting.
		stopErr := env.Stop()
		return nil, errors.Join(fmt.Errorf("start control plane: %w%s", err, logTails(workDir)), stopErr)
	}
	a := &APIServer{
		Config:         cfg,
		KubeconfigPath: filepath.Join(workDir, "kubeconfig"),
		env:            env,
		workDir:        workDir,
		crdDir:         crdDir,
		logs:           logs,
	}
	defer func() {
		if err != nil {
			// Stop closes the logs and removes workDir too; the outer
			// deferred cleanup repeats that harmlessly.
			err = errors.Join(err, a.Stop())
		}
	}()
	if err := os.WriteFile(a.KubeconfigPath, env.KubeConfig, 0o600); err != nil {
		return nil, err
	}
	if a.Dynamic, err = dynamic.NewForConfig(cfg); err != nil {
		return nil, err
	}
	if a.Clientset, err = kubernetes.NewForConfig(cfg); err != nil {
		return nil, err
	}
	if err := a.waitServingVMIs(ctx); err != nil {
		return nil, err
	}
	return a, nil
}

// MustStartAPIServer starts a control plane for a test and stops it in tb.Cleanup. It
// skips the test when the kube-apiserver assets were never built and KUBEBUILDER_ASSETS
// is unset (a plain `go test`); `make test` builds them and sets it, so there a missing
// asset fails the test instead.
func MustStartAPIServer(tb TB) *APIServer {
	tb.Helper()
	RequireDaemons(tb, "etcd and kube-apiserver")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	api, err := StartAPIServer(ctx)
	if errors.Is(err, ErrKubeAssetsMissing) && os.Getenv("KUBEBUILDER_ASSETS") == "" {
		Unavailable(tb, "%v", err)
	}
	if err != nil {
		tb.Fatalf("starting kube-apiserver: %v", err)
	}
	tb.Cleanup(func() {
		if err := api.Stop(); err != nil {
			tb.Errorf("stopping kube-apiserver: %v", err)
		}
	})
	return api
}

// Stop stops kube-apiserver and etcd, waits for them to exit and deletes all
// state. It is safe to call more than once.
func (a *APIServer) Stop() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stopped {
		return nil
	}
	a.stopped = true
	err := a.env.Stop()
	for _, f := range a.logs {
		err = errors.Join(err, f.Close())
	}
	return errors.Join(err, os.RemoveAll(a.workDir))
}

// Restart stops and starts kube-apiserver only. etcd keeps running, so all
// objects survive; the address, serving certificate and client credentials
// stay the same, so Config, KubeconfigPath and the clients keep working once
// the server is back. Watches held by clients are cut, as in a real control
// plane upgrade or crash. Restart returns when VMIs are served again.
func (a *APIServer) Restart(ctx context.Context) error {
	if err := a.StopKubeAPIServer(); err != nil {
		return err
	}
	return a.StartKubeAPIServer(ctx)
}

// StopKubeAPIServer stops kube-apiserver only, leaving etcd and the stored
// objects in place, to simulate an unreachable API server. Connections are
// refused until StartKubeAPIServer.
func (a *APIServer) StopKubeAPIServer() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stopped {
		return errors.New("testenv: API server already stopped for good")
	}
	if err := a.env.ControlPlane.APIServer.Stop(); err != nil {
		return fmt.Errorf("stop kube-apiserver: %w", err)
	}
	return nil
}

// StartKubeAPIServer starts kube-apiserver again after StopKubeAPIServer, on
// the same address and with the same certificates, and returns when VMIs are
// served again. Calling it while kube-apiserver runs is a no-op.
func (a *APIServer) StartKubeAPIServer(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stopped {
		return errors.New("testenv: API server already stopped for good")
	}
	// Start re-runs envtest's preparation, which keeps the port, the serving
	// certificate (already in CertDir) and the client CA (held in memory) —
	// everything Config and the kubeconfig depend on.
	kas := a.env.ControlPlane.APIServer
	kas.StartTimeout = startTimeoutFor(ctx)
	if err := kas.Start(); err != nil {
		return fmt.Errorf("start kube-apiserver: %w%s", err, logTails(a.workDir))
	}
	return a.waitServingVMIs(ctx)
}

// startTimeoutFor returns how long a process may take to become healthy:
// startTimeout, or less if ctx expires sooner (envtest takes no context).
func startTimeoutFor(ctx context.Context) time.Duration {
	if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < startTimeout {
		return time.Until(deadline)
	}
	return startTimeout
}

// waitServingVMIs polls until listing VMIs succeeds. /healthz turning green
// (which is all envtest waits for) precedes the CRD handlers being ready by a
// little, and callers' first request should not have to retry.
func (a *APIServer) waitServingVMIs(ctx context.Context) error {
	var lastErr error
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, startTimeout, true, func(ctx context.Context) (bool, error) {
		_, lastErr = a.Dynamic.Resource(VMIResource).List(ctx, metav1.ListOptions{Limit: 1})
		return lastErr == nil, nil
	})
	if err != nil {
		return fmt.Errorf("VMIs not served: %w (last error: %v)", err, lastErr)
	}
	return nil
}

// AddUser creates a user of the API server, authenticated by a client certificate,
// who belongs to groups and may do only what RBAC grants it (nothing, to begin with),
// and returns the path of a kubeconfig for it, e.g. to show what a collector without
// its ClusterRole does.
func (a *APIServer) AddUser(name string, groups ...string) (kubeconfigPath string, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	u, err := a.env.AddUser(envtest.User{Name: name, Groups: groups}, a.Config)
	if err != nil {
		return "", fmt.Errorf("add user %s: %w", name, err)
	}
	kubeconfig, err := u.KubeConfig()
	if err != nil {
		return "", fmt.Errorf("kubeconfig of user %s: %w", name, err)
	}
	path := filepath.Join(a.workDir, "kubeconfig-"+name)
	return path, os.WriteFile(path, kubeconfig, 0o600)
}

// UninstallCRDs deletes the CRDs StartAPIServer installed, with every VMI, and returns
// once VMIs are no longer served: an API server of a cluster without KubeVirt.
func (a *APIServer) UninstallCRDs(ctx context.Context) error {
	if err := envtest.UninstallCRDs(a.Config, envtest.CRDInstallOptions{Paths: []string{a.crdDir}}); err != nil {
		return fmt.Errorf("uninstall CRDs: %w", err)
	}
	var lastErr error
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, startTimeout, true, func(ctx context.Context) (bool, error) {
		_, lastErr = a.Dynamic.Resource(VMIResource).List(ctx, metav1.ListOptions{Limit: 1})
		return apierrors.IsNotFound(lastErr), nil
	})
	if err != nil {
		return fmt.Errorf("VMIs still served after the CRDs were deleted: %w (last error: %v)", err, lastErr)
	}
	return nil
}

// InstallCRDs installs the CRDs again after UninstallCRDs and returns once VMIs are
// served.
func (a *APIServer) InstallCRDs(ctx context.Context) error {
	if _, err := envtest.InstallCRDs(a.Config, envtest.CRDInstallOptions{Paths: []string{a.crdDir}}); err != nil {
		return fmt.Errorf("install CRDs: %w", err)
	}
	return a.waitServingVMIs(ctx)
}

// VMIStatus is the part of a VMI's status that KubeVirt's virt-controller and
// virt-handler maintain and that the collector reads. Zero values mean
// "absent": the corresponding field is removed.
type VMIStatus struct {
	// Phase is e.g. "Scheduled", "Running", "Succeeded" or "Failed".
	Phase string
	// NodeName is the node the VMI runs on. KubeVirt mirrors it in the
	// kubevirt.io/nodeName label, and SetVMIStatus does the same.
	NodeName string
	// ActivePods maps virt-launcher pod UIDs to node names; during a live
	// migration it holds both the source and the target pod.
	ActivePods map[string]string
	// RuntimeUser is the UID QEMU runs as (107 for non-root VMIs, 0 for root).
	// Nil removes the field, as on KubeVirt versions that predate it.
	RuntimeUser *int64
}

// CreateVMI creates an empty VirtualMachineInstance ns/name (no status, no
// labels), creating the namespace first if needed. It fails if the VMI exists.
func (a *APIServer) CreateVMI(ctx context.Context, ns, name string) error {
	if err := a.ensureNamespace(ctx, ns); err != nil {
		return err
	}
	vmi := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": VMIResource.GroupVersion().String(),
		"kind":       "VirtualMachineInstance",
		"metadata": map[string]any{
			"name":      name,
			"namespace": ns,
		},
		// The CRD requires a spec, as upstream's does; the collector never
		// reads it, so a minimal domain suffices.
		"spec": map[string]any{
			"domain": map[string]any{"devices": map[string]any{}},
		},
	}}
	if _, err := a.Dynamic.Resource(VMIResource).Namespace(ns).Create(ctx, vmi, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create VMI %s/%s: %w", ns, name, err)
	}
	return nil
}

// SetVMIStatus sets the fields of st on the VMI ns/name and the
// kubevirt.io/nodeName label (removed when st.NodeName is empty), leaving any
// other status fields and labels alone.
//
// Like virt-controller and virt-handler it writes status and label together
// in one Update of the VMI itself, not of a status subresource (the VMI CRD
// has none), so watchers see a single change. Conflicts are retried.
func (a *APIServer) SetVMIStatus(ctx context.Context, ns, name string, st VMIStatus) error {
	client := a.Dynamic.Resource(VMIResource).Namespace(ns)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		vmi, err := client.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if err := applyVMIStatus(vmi, st); err != nil {
			return err
		}
		_, err = client.Update(ctx, vmi, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("set status of VMI %s/%s: %w", ns, name, err)
	}
	return nil
}

// applyVMIStatus writes st into vmi, removing the fields st leaves empty.
func applyVMIStatus(vmi *unstructured.Unstructured, st VMIStatus) error {
	set := func(value any, field string) error {
		if value == nil {
			unstructured.RemoveNestedField(vmi.Object, "status", field)
			return nil
		}
		return unstructured.SetNestedField(vmi.Object, value, "status", field)
	}
	var phase, nodeName, activePods, runtimeUser any
	if st.Phase != "" {
		phase = st.Phase
	}
	if st.NodeName != "" {
		nodeName = st.NodeName
	}
	if len(st.ActivePods) > 0 {
		pods := make(map[string]any, len(st.ActivePods))
		for uid, node := range st.ActivePods {
			pods[uid] = node
		}
		activePods = pods
	}
	if st.RuntimeUser != nil {
		runtimeUser = *st.RuntimeUser
	}
	if err := errors.Join(
		set(phase, "phase"),
		set(nodeName, "nodeName"),
		set(activePods, "activePods"),
		set(runtimeUser, "runtimeUser"),
	); err != nil {
		return err
	}

	labels := vmi.GetLabels()
	if st.NodeName != "" {
		if labels == nil {
			labels = map[string]string{}
		}
		labels[NodeNameLabel] = st.NodeName
	} else {
		delete(labels, NodeNameLabel)
	}
	vmi.SetLabels(labels)
	return nil
}

// DeleteVMI deletes the VMI ns/name. The harness adds no finalizers, so the
// VMI is gone when DeleteVMI returns. Deleting a missing VMI is not an error,
// so DeleteVMI also suits cleanup paths.
func (a *APIServer) DeleteVMI(ctx context.Context, ns, name string) error {
	err := a.Dynamic.Resource(VMIResource).Namespace(ns).Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete VMI %s/%s: %w", ns, name, err)
	}
	return nil
}

// ensureNamespace creates namespace ns unless it exists. Without a
// kube-controller-manager nothing else would: envtest only has "default" and
// the system namespaces.
func (a *APIServer) ensureNamespace(ctx context.Context, ns string) error {
	_, err := a.Clientset.CoreV1().Namespaces().Create(ctx,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s: %w", ns, err)
	}
	return nil
}

// KubeAssetsDir returns the directory holding the kube-apiserver and etcd
// binaries: $KUBEBUILDER_ASSETS if set, else the cache hack/kube-assets.sh
// writes ($KUBE_ASSETS_DIR, or ${XDG_CACHE_HOME:-$HOME/.cache}/otelcol-kubevirt/
// k8s-<KubeVersion>). It fails, wrapping ErrKubeAssetsMissing, unless both
// binaries are present and executable.
func KubeAssetsDir() (string, error) {
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	if dir == "" {
		dir = os.Getenv("KUBE_ASSETS_DIR")
	}
	if dir == "" {
		// Spelled out rather than os.UserCacheDir so the path matches the
		// script's on every OS (macOS would otherwise differ).
		cache := os.Getenv("XDG_CACHE_HOME")
		if cache == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return "", fmt.Errorf("%w: no KUBEBUILDER_ASSETS and no home directory: %v", ErrKubeAssetsMissing, err)
			}
			cache = filepath.Join(home, ".cache")
		}
		dir = filepath.Join(cache, "otelcol-kubevirt", "k8s-"+KubeVersion)
	}
	for _, bin := range []string{"kube-apiserver", "etcd"} {
		fi, err := os.Stat(filepath.Join(dir, bin))
		if err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			continue
		}
		return "", fmt.Errorf("%w: no executable %s in %s; run `make kube-assets` "+
			"(or `export KUBEBUILDER_ASSETS=\"$(hack/kube-assets.sh)\"`) first", ErrKubeAssetsMissing, bin, dir)
	}
	return dir, nil
}

// findRepoPath returns the absolute path of rel, a path relative to the
// repository root. It searches upwards from the working directory (which for
// `go test` is the package directory), then from this source file, so it
// works for tests and for programs run from anywhere inside the checkout.
func findRepoPath(rel string) (string, error) {
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		starts = append(starts, filepath.Dir(file))
	}
	for _, dir := range starts {
		for {
			p := filepath.Join(dir, rel)
			if _, err := os.Stat(p); err == nil {
				return p, nil
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return "", fmt.Errorf("testenv: %s not found above %s", rel, strings.Join(starts, " or "))
}

// logTails returns the last lines of the control plane logs, to make start
// failures (bad flags, port clashes, etcd refusing its data dir) diagnosable
// without rerunning.
func logTails(workDir string) string {
	var b strings.Builder
	for _, name := range []string{"etcd.log", "kube-apiserver.log"} {
		data, err := os.ReadFile(filepath.Join(workDir, name))
		if err != nil || len(data) == 0 {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		if len(lines) > 15 {
			lines = lines[len(lines)-15:]
		}
		fmt.Fprintf(&b, "\n--- last lines of %s:\n%s", name, strings.Join(lines, "\n"))
	}
	return b.String()
}
