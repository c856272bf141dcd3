// Package cluster runs a real single-node Kubernetes on this machine, for the lab
// (`make run`) and for the tests that deploy the collector as users do: etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler, containerd with runc and
// the CNI bridge, kubelet and kube-proxy, each the upstream binary with a kubeadm-like
// configuration, in a node of their own (see node.go) that Stop removes without a
// trace.
//
// It does not build anything (hack/kube-assets.sh and hack/containerd-assets.sh do,
// and images come as docker-archives), know about KubeVirt (internal/lab plays
// KubeVirt's part on top), or pull images: there is no registry, so every image a pod
// uses must be imported with Options.Images or ImportImage first.
//
// It needs root, and one node runs on a machine at a time: Start waits while
// another is up.
package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv/watchdog"
)

const (
	// DefaultNodeName is the node's name unless Options says otherwise.
	DefaultNodeName = "worker-node-1"
	// PauseImage is the pods' sandbox image. There is no registry to pull
	// registry.k8s.io/pause from, so it is one of the images given to Start.
	PauseImage = "localhost/otelcol-kubevirt-lab/pause:latest"

	lockPath = "/run/lock/otelcol-kubevirt-node.lock"
)

// Options says what the node runs. Only Images is commonly set.
type Options struct {
	// NodeName is the node's name. Default: DefaultNodeName.
	NodeName string
	// KubeAssets holds kube-apiserver, kube-controller-manager, kube-scheduler,
	// kubelet, kube-proxy, kubectl and etcd. Default: $KUBEBUILDER_ASSETS, which
	// `hack/kube-assets.sh` prints.
	KubeAssets string
	// ContainerdAssets holds containerd, containerd-shim-runc-v2 and ctr.
	// Default: $CONTAINERD_ASSETS, which `hack/containerd-assets.sh` prints.
	ContainerdAssets string
	// Etcd, Runc and CNIPlugins default to KubeAssets/etcd, Debian's runc and
	// Debian's CNI plugins directory.
	Etcd, Runc, CNIPlugins string
	// Images are docker-archives imported into containerd before kubelet starts,
	// unless it holds them already; they must include PauseImage.
	Images []string
	// ImageStore is containerd's root, kept from node to node for its images.
	// Default: ${XDG_CACHE_HOME:-~/.cache}/otelcol-kubevirt/node-containerd.
	ImageStore string
	// Progress, if set, receives a line for each step.
	Progress func(format string, args ...any)
}

// Cluster is a running node. Its methods are safe for concurrent use.
type Cluster struct {
	// Kubeconfig is the path of a cluster-admin kubeconfig.
	Kubeconfig string
	// Config, Clientset and Dynamic authenticate as cluster admin.
	Config    *rest.Config
	Clientset kubernetes.Interface
	Dynamic   dynamic.Interface

	opts            Options
	dir             string
	pki             *pki
	adminKubeconfig string
	holderPID       int
	procs           []*process

	lock         *os.File
	watchdog     *exec.Cmd
	watchdogPipe *os.File
	watchdogOut  bytes.Buffer

	stopOnce sync.Once
	stopErr  error
}

// Start brings the node up and returns once it is Ready, kube-proxy has programmed
// Services and the default namespace's service account and root CA exist, so that a
// pod created next runs and reaches the API server. The caller must call Stop; should
// the process die first, a watchdog tears the node down.
func Start(ctx context.Context, opts Options) (_ *Cluster, err error) {
	if err := opts.complete(); err != nil {
		return nil, err
	}
	c := &Cluster{opts: opts}
	if err := c.takeLock(ctx); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, c.Stop())
		}
	}()
	// What a node killed together with its watchdog left behind.
	if out, err := exec.CommandContext(ctx, "sh", "-c", teardownScript, "teardown", cgroupName, "", hostVeth).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("removing what an earlier node left: %v: %s", err, out)
	}
	if c.dir, err = os.MkdirTemp("/var/tmp", "otelcol-kubevirt-node-"); err != nil {
		return nil, err
	}
	for _, d := range []string{"logs", "kubelet", "log"} {
		if err := os.Mkdir(filepath.Join(c.dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	if err := c.startWatchdog(); err != nil {
		return nil, err
	}
	start := time.Now()
	c.progress("starting node %s in %s", opts.NodeName, c.dir)
	if err := c.bringUp(ctx); err != nil {
		return nil, err
	}
	c.progress("node %s is ready after %s", opts.NodeName, time.Since(start).Round(100*time.Millisecond))
	return c, nil
}

func (o *Options) complete() error {
	if os.Geteuid() != 0 {
		return errors.New("cluster: a node needs root (namespaces, cgroups, mounts)")
	}
	if o.NodeName == "" {
		o.NodeName = DefaultNodeName
	}
	if o.KubeAssets == "" {
		o.KubeAssets = os.Getenv("KUBEBUILDER_ASSETS")
	}
	if o.ContainerdAssets == "" {
		o.ContainerdAssets = os.Getenv("CONTAINERD_ASSETS")
	}
	if o.Etcd == "" {
		o.Etcd = filepath.Join(o.KubeAssets, "etcd")
	}
	if o.Runc == "" {
		o.Runc = "/usr/sbin/runc"
	}
	if o.CNIPlugins == "" {
		o.CNIPlugins = "/usr/lib/cni"
	}
	if o.ImageStore == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			return err
		}
		o.ImageStore = filepath.Join(cache, "otelcol-kubevirt", "node-containerd")
	}
	var errs []error
	need := func(path, how string) {
		if st, err := os.Stat(path); err != nil || st.IsDir() {
			errs = append(errs, fmt.Errorf("%s is missing: %s", path, how))
		}
	}
	if o.KubeAssets == "" || o.ContainerdAssets == "" {
		return errors.New("cluster: set KUBEBUILDER_ASSETS=$(hack/kube-assets.sh) and CONTAINERD_ASSETS=$(hack/containerd-assets.sh)")
	}
	for _, c := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "kubectl"} {
		need(filepath.Join(o.KubeAssets, c), "run hack/kube-assets.sh")
	}
	for _, c := range []string{"containerd", "containerd-shim-runc-v2", "ctr"} {
		need(filepath.Join(o.ContainerdAssets, c), "run hack/containerd-assets.sh")
	}
	need(o.Etcd, "install Debian's etcd-server (make deps)")
	need(o.Runc, "install Debian's runc (make deps)")
	need(filepath.Join(o.CNIPlugins, "bridge"), "install Debian's containernetworking-plugins (make deps)")
	for _, img := range o.Images {
		need(img, "build the images first (make image lab-images)")
	}
	return errors.Join(errs...)
}

// takeLock makes sure this is the only node on the machine: two would fight over
// the cgroup, the veth and /var/lib/kubelet. It waits for another node to stop, until
// ctx ends.
func (c *Cluster) takeLock(ctx context.Context) error {
	f, err := lockWait(ctx, lockPath, func() {
		c.progress("another node runs on this machine (%s is locked; `make stop` stops the lab's): waiting", lockPath)
	})
	if err != nil {
		return fmt.Errorf("cluster: another node is running on this machine: %w", err)
	}
	c.lock = f
	return nil
}

// lockWait takes an exclusive flock on path, calling waiting once if it has to wait,
// and returns the file holding it: closing it releases the lock.
func lockWait(ctx context.Context, path string, waiting func()) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	first := true
	err = wait.PollUntilContextCancel(ctx, time.Second, true, func(context.Context) (bool, error) {
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			if first {
				waiting()
				first = false
			}
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s is locked: %w", path, err)
	}
	return f, nil
}

// startWatchdog prepares what teardown.sh undoes and starts the watchdog that runs
// it, before anything is created that it would have to undo.
func (c *Cluster) startWatchdog() error {
	// The node binds its kubelet directory over /var/lib/kubelet, the path the
	// DaemonSet's hostPath names; the mount point has to exist on the host.
	if _, err := os.Stat("/var/lib/kubelet"); errors.Is(err, os.ErrNotExist) {
		if err := os.Mkdir("/var/lib/kubelet", 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(c.dir, "made-var-lib-kubelet"), nil, 0o600); err != nil {
			return err
		}
	}
	if err := saveHostSysctls(filepath.Join(c.dir, "host-sysctls")); err != nil {
		return err
	}
	if err := makeCgroups(); err != nil {
		return err
	}
	cmd, pipe, err := watchdog.Start("otelcol-kubevirt-node-teardown", "cat >/dev/null; "+teardownScript,
		&c.watchdogOut, cgroupName, c.dir, hostVeth)
	if err != nil {
		return err
	}
	c.watchdog, c.watchdogPipe = cmd, pipe
	return nil
}

func (c *Cluster) bringUp(ctx context.Context) error {
	var err error
	if c.pki, err = newPKI(filepath.Join(c.dir, "pki")); err != nil {
		return err
	}
	if _, _, err := c.pki.issue("admin", identity{commonName: "kubernetes-admin", organizations: []string{"system:masters"}}); err != nil {
		return err
	}
	if c.adminKubeconfig, err = c.pki.kubeconfig("admin", c.server()); err != nil {
		return err
	}
	c.Kubeconfig = c.adminKubeconfig
	if err := c.connect(); err != nil {
		return err
	}

	if err := c.startHolder(ctx); err != nil {
		return err
	}
	if err := c.startEtcd(); err != nil {
		return err
	}
	if err := c.startAPIServer(); err != nil {
		return err
	}
	c.progress("waiting for kube-apiserver at %s", c.server())
	if err := c.waitFor(ctx, "kube-apiserver to be ready", func() (bool, error) {
		_, err := c.Clientset.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err == nil, nil
	}); err != nil {
		return err
	}
	if err := errors.Join(c.startControllerManager(), c.startScheduler(), c.startContainerd()); err != nil {
		return err
	}
	if err := c.waitFor(ctx, "containerd's CRI", func() (bool, error) {
		return c.criReady(ctx), nil
	}); err != nil {
		return err
	}
	if err := c.removeStalePods(ctx); err != nil {
		return err
	}
	if err := c.importImages(ctx, c.opts.Images); err != nil {
		return err
	}
	if err := c.startKubelet(); err != nil {
		return err
	}
	c.progress("waiting for kubelet to register %s and report it Ready", c.opts.NodeName)
	if err := c.waitFor(ctx, "the node to be Ready", func() (bool, error) {
		node, err := c.Clientset.CoreV1().Nodes().Get(ctx, c.opts.NodeName, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		for _, cond := range node.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				return cond.Status == corev1.ConditionTrue, nil
			}
		}
		return false, nil
	}); err != nil {
		return err
	}
	if err := c.startKubeProxy(); err != nil {
		return err
	}
	return c.waitFor(ctx, "kube-proxy's rules and the default namespace's service account and root CA", func() (bool, error) {
		resp, err := http.Get("http://" + kubeProxyHealthz + "/healthz")
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return false, nil
		}
		if _, err := c.Clientset.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{}); err != nil {
			return false, nil
		}
		_, err = c.Clientset.CoreV1().ConfigMaps("default").Get(ctx, "kube-root-ca.crt", metav1.GetOptions{})
		return err == nil, nil
	})
}

func (c *Cluster) connect() error {
	cfg, err := clientcmd.BuildConfigFromFlags("", c.adminKubeconfig)
	if err != nil {
		return err
	}
	c.Config = cfg
	if c.Clientset, err = kubernetes.NewForConfig(cfg); err != nil {
		return err
	}
	c.Dynamic, err = dynamic.NewForConfig(cfg)
	return err
}

// waitFor polls cond until it holds, failing early, with its log, when a daemon of
// the node exits.
func (c *Cluster) waitFor(ctx context.Context, what string, cond func() (bool, error)) error {
	err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(context.Context) (bool, error) {
		for _, p := range c.procs {
			if p.exited() {
				return false, fmt.Errorf("%s exited: %v%s", p.name, p.err, tail(p.logPath))
			}
		}
		return cond()
	})
	if err != nil {
		return fmt.Errorf("waiting for %s: %w%s", what, err, c.Logs())
	}
	return nil
}

// Logs returns the end of every daemon's log, for a failure message.
func (c *Cluster) Logs() string {
	var b strings.Builder
	for _, p := range c.procs {
		b.WriteString(tail(p.logPath))
	}
	return b.String()
}

// LogDir holds each daemon's log as <name>.log. Stop removes it.
func (c *Cluster) LogDir() string { return filepath.Join(c.dir, "logs") }

// NodeName is the node's name.
func (c *Cluster) NodeName() string { return c.opts.NodeName }

// Kubectl runs kubectl as cluster admin and returns its output; an error carries
// that output too.
func (c *Cluster) Kubectl(ctx context.Context, stdin []byte, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, c.bin("kubectl"), append([]string{"--kubeconfig", c.adminKubeconfig}, args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// KubectlPath is the kubectl binary matching the cluster's version.
func (c *Cluster) KubectlPath() string { return c.bin("kubectl") }

// Stop tears the node down: every process, container, mount, network device,
// iptables rule, cgroup and file it made. It returns what could not be removed. It
// is safe to call more than once.
func (c *Cluster) Stop() error {
	c.stopOnce.Do(func() {
		if c.watchdog == nil && c.dir != "" {
			// Start failed before the watchdog ran: tear down what it prepared.
			if out, err := exec.Command("sh", "-c", teardownScript, "teardown", cgroupName, c.dir, hostVeth).CombinedOutput(); err != nil {
				c.stopErr = fmt.Errorf("tearing down the node: %v: %s", err, out)
			}
		}
		if c.watchdog != nil {
			c.progress("stopping node %s", c.opts.NodeName)
			c.watchdogPipe.Close() // the watchdog's cue
			if err := c.watchdog.Wait(); err != nil {
				c.stopErr = fmt.Errorf("tearing down the node: %v: %s", err, strings.TrimSpace(c.watchdogOut.String()))
			}
		}
		for _, p := range c.procs {
			select {
			case <-p.done: // killed by the teardown
			case <-time.After(10 * time.Second):
				c.stopErr = errors.Join(c.stopErr, fmt.Errorf("%s (pid %d) survived the teardown", p.name, p.cmd.Process.Pid))
			}
		}
		if c.lock != nil {
			c.lock.Close()
		}
	})
	return c.stopErr
}

func (c *Cluster) progress(format string, args ...any) {
	if c.opts.Progress != nil {
		c.opts.Progress(format, args...)
	}
}

// KubeletDir is, on the host, the directory the node sees as /var/lib/kubelet:
// device plugins put their sockets in its device-plugins.
func (c *Cluster) KubeletDir() string { return filepath.Join(c.dir, "kubelet") }
