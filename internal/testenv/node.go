package testenv

// Node: a kubelet-style pods directory whose virt-launcher-like pods each run
// a Libvirtd (libvirtd.go) with one guest, laid out as virt-handler finds them.

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv/watchdog"
)

// The kubelet layout of a virt-launcher pod's libvirt, as KubeVirt's virt-handler
// dials it through the host's pods directory. Spelled out here rather than taken
// from internal/launcher so that tests compare that package with an independent
// statement of the layout.
const (
	// LauncherVolumeRelPath is the launcher's libvirt-runtime emptyDir below its pod
	// directory <pods>/<podUID>.
	LauncherVolumeRelPath = "volumes/kubernetes.io~empty-dir/libvirt-runtime"
	// LauncherSocketName is virtqemud's socket in that emptyDir.
	LauncherSocketName = "virtqemud-sock"
	// MaxPodsDirLen is the longest pods directory whose launcher sockets,
	// <pods>/<36-byte UID>/volumes/kubernetes.io~empty-dir/libvirt-runtime/virtqemud-sock,
	// fit in a unix socket path (107 bytes).
	MaxPodsDirLen = maxSocketPath - (1 + 36 + 1 + len(LauncherVolumeRelPath) + 1 + len(LauncherSocketName))
	// DefaultNodeName is the node name [StartNode] uses unless told otherwise.
	DefaultNodeName = "worker-node-1"
)

// ErrKVMUnusable is returned (wrapped) by [Node.StartLauncher] for a "kvm" guest
// that the launcher's libvirtd cannot run; the error says why. Callers may fall
// back to "qemu".
var ErrKVMUnusable = errors.New("KVM not usable by the launcher's libvirtd")

// NodeOptions configures [StartNode]. The zero value is valid.
type NodeOptions struct {
	// NodeName is the node's name, as VMIs on it carry it in status.nodeName and
	// status.activePods. Default: [DefaultNodeName].
	NodeName string
	// PodsDir is the kubelet pods directory (/var/lib/kubelet/pods on a real node).
	// Default: a new directory under /tmp, removed by Stop. A caller-supplied one is
	// created if missing and kept by Stop (the pod directories in it are removed).
	// Every directory above it must be searchable by the daemon user.
	PodsDir string
	// User is the account every launcher's libvirtd runs as (see
	// [LibvirtdOptions.User]); KubeVirt uses uid 107.
	User string
	// CapsCacheDir is passed to each launcher's libvirtd (see
	// [LibvirtdOptions.CapsCacheDir]). Default: [DefaultCapsCacheDir].
	CapsCacheDir string
}

// Node is a kubelet-style pods directory with virt-launcher-like pods in it, each
// running its own libvirtd and one QEMU guest. Its methods are safe for concurrent
// use.
type Node struct {
	name       string
	podsDir    string // the real directory
	ownPodsDir bool
	// shortDir reaches podsDir in at most MaxPodsDirLen bytes: podsDir itself or a
	// symlink /tmp/XY created by StartNode.
	shortDir     string
	ownShortDir  bool
	user         string
	capsCacheDir string

	reaper     *exec.Cmd
	reaperPipe *os.File

	mu      sync.Mutex
	pods    []*LauncherPod
	stopped bool
}

// LauncherPod is one virt-launcher-like pod of a [Node]: a pod directory whose
// libvirt-runtime emptyDir holds a session-mode libvirtd's runtime state, with
// virtqemud-sock leading to its socket, and one running guest named
// <Namespace>_<Name>.
type LauncherPod struct {
	// PodUID is the pod's UID, a fresh random UUID: the key to put into the VMI's
	// status.activePods.
	PodUID string
	// Namespace and Name are the VMI's.
	Namespace, Name string
	// DomainType is the guest's libvirt domain type, "kvm" or "qemu".
	DomainType string
	// Libvirtd is the pod's daemon, for restarts, guest PIDs and the like.
	Libvirtd *Libvirtd

	node        *Node
	runtimeUser int64
	stopOnce    sync.Once
	stopErr     error
}

// StartNode creates the pods directory and, when its path is too long for launcher
// sockets, a short symlink to it (see [Node.PodsDir]). Launchers are added with
// [Node.StartLauncher]. Call Stop; should the process die first, a watchdog removes
// the directories (each launcher's libvirtd has its own for processes).
func StartNode(ctx context.Context, opts NodeOptions) (_ *Node, err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	n := &Node{name: opts.NodeName, user: opts.User, capsCacheDir: opts.CapsCacheDir}
	if n.name == "" {
		n.name = DefaultNodeName
	}
	if n.capsCacheDir == "" {
		n.capsCacheDir = DefaultCapsCacheDir()
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, n.Stop())
		}
	}()
	if opts.PodsDir == "" {
		// /tmp, not os.TempDir: the daemon user must get through every parent.
		if n.podsDir, err = os.MkdirTemp("/tmp", "testenv-pods-"); err != nil {
			return nil, err
		}
		n.ownPodsDir = true
	} else {
		if n.podsDir, err = filepath.Abs(opts.PodsDir); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(n.podsDir, 0o755); err != nil {
			return nil, err
		}
	}
	if err := os.Chmod(n.podsDir, 0o755); err != nil {
		return nil, err
	}
	n.shortDir = n.podsDir
	if len(n.podsDir) > MaxPodsDirLen {
		if n.shortDir, err = shortSymlink(n.podsDir); err != nil {
			return nil, err
		}
		n.ownShortDir = true
	}
	if err := n.startReaper(); err != nil {
		return nil, err
	}
	return n, nil
}

// shortSymlink creates a symlink /tmp/XY to target with a free two-character name:
// /tmp/ leaves room for no more within MaxPodsDirLen. os.Symlink fails on an
// existing name, so concurrent nodes never share one.
func shortSymlink(target string) (string, error) {
	const chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	prefix := "/tmp/"
	free := MaxPodsDirLen - len(prefix)
	if free < 1 {
		return "", fmt.Errorf("no room for a pods directory symlink in %d bytes", MaxPodsDirLen)
	}
	var lastErr error
	for range 500 {
		b := make([]byte, free)
		rand.Read(b)
		for i := range b {
			b[i] = chars[int(b[i])%len(chars)]
		}
		link := prefix + string(b)
		err := os.Symlink(target, link)
		if err == nil {
			return link, nil
		}
		if !errors.Is(err, os.ErrExist) {
			return "", err
		}
		lastErr = err
	}
	return "", fmt.Errorf("no free short name for the pods directory symlink: %w", lastErr)
}

// nodeReaperScript waits until the owner's end of its stdin pipe closes, then
// removes the pods directory ($1, if ours) and the short symlink ($2, if ours). The
// launchers' own reapers kill their processes at the same time, which may briefly
// leave files behind, hence the retries.
const nodeReaperScript = `trap '' HUP INT TERM
read -r _ || :
for i in 1 2 3 4 5; do
	[ -z "$1" ] || rm -rf -- "$1" 2>/dev/null
	[ -z "$1" ] || [ -e "$1" ] || break
	sleep 0.2
done
[ -z "$2" ] || rm -f -- "$2"
`

// startReaper starts the watchdog described at nodeReaperScript.
func (n *Node) startReaper() error {
	var dir, link string
	if n.ownPodsDir {
		dir = n.podsDir
	}
	if n.ownShortDir {
		link = n.shortDir
	}
	if dir == "" && link == "" {
		return nil
	}
	cmd, w, err := watchdog.Start("testenv-node-reaper", nodeReaperScript, nil, dir, link)
	if err != nil {
		return err
	}
	n.reaper, n.reaperPipe = cmd, w
	return nil
}

// Name is the node's name.
func (n *Node) Name() string { return n.name }

// PodsDir is the path a collector should use as libvirt.pods_dir: at most
// [MaxPodsDirLen] bytes, so launcher sockets below it can be dialled. It is the pods
// directory itself or a short symlink to it.
func (n *Node) PodsDir() string { return n.shortDir }

// RealPodsDir is the pods directory itself, which may be too long to dial sockets
// through.
func (n *Node) RealPodsDir() string { return n.podsDir }

// Launchers returns the running launcher pods in the order they were started.
func (n *Node) Launchers() []*LauncherPod {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.pods)
}

// StartLauncher lays out a new launcher pod for VMI ns/name and starts its libvirtd
// (session mode, unprivileged, runtime state in the pod's libvirt-runtime emptyDir)
// and a guest <ns>_<name> of domainType ("kvm" or "qemu") in it, as virt-launcher
// does. Put the returned pod's [LauncherPod.RunningStatus] into the VMI. On error
// nothing of the pod is left.
func (n *Node) StartLauncher(ctx context.Context, ns, name, domainType string) (_ *LauncherPod, err error) {
	n.mu.Lock()
	stopped := n.stopped
	n.mu.Unlock()
	if stopped {
		return nil, errors.New("testenv: node already stopped")
	}
	uid, err := newUID()
	if err != nil {
		return nil, err
	}
	podDir := filepath.Join(n.podsDir, uid)
	p := &LauncherPod{PodUID: uid, Namespace: ns, Name: name, DomainType: domainType, node: n}
	defer func() {
		if err != nil {
			err = errors.Join(err, p.teardown())
		}
	}()
	// kubelet makes these 0750 root; the daemon reaches its emptyDir by its host
	// path here (through a symlink), so others may search them.
	for _, d := range []string{podDir, filepath.Join(podDir, "volumes"), filepath.Join(podDir, "volumes", "kubernetes.io~empty-dir")} {
		if err := os.Mkdir(d, 0o711); err != nil {
			return nil, err
		}
		if err := os.Chmod(d, 0o711); err != nil {
			return nil, err
		}
	}
	// The libvirtd harness creates and chowns the emptyDir and points
	// <RuntimeDir>/libvirt at it, so the socket libvirtd binds there lands in it.
	p.Libvirtd, err = StartLibvirtd(ctx, LibvirtdOptions{
		LibvirtRuntimeDir: p.VolumeDir(),
		User:              n.user,
		CapsCacheDir:      n.capsCacheDir,
	})
	if err != nil {
		return nil, fmt.Errorf("launcher pod %s for %s/%s: %w", uid, ns, name, err)
	}
	// Debian's monolithic libvirtd names its socket libvirt-sock; virt-launcher's
	// virtqemud names it virtqemud-sock. A relative link works through any path.
	if err := os.Symlink(LibvirtdSocketName, filepath.Join(p.VolumeDir(), LauncherSocketName)); err != nil {
		return nil, err
	}
	if p.runtimeUser, err = userID(p.Libvirtd.User()); err != nil {
		return nil, err
	}
	if domainType == "kvm" {
		if ok, why := p.Libvirtd.KVMUsable(); !ok {
			return nil, fmt.Errorf("%w: %s", ErrKVMUnusable, why)
		}
	}
	if err := p.Libvirtd.StartGuest(ctx, p.Domain(), domainType); err != nil {
		return nil, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.stopped {
		return nil, errors.New("testenv: node stopped while the launcher started")
	}
	n.pods = append(n.pods, p)
	return p, nil
}

// Domain is the guest's libvirt domain name, <Namespace>_<Name>.
func (p *LauncherPod) Domain() string { return p.Namespace + "_" + p.Name }

// PodDir is the pod's directory in the real pods directory.
func (p *LauncherPod) PodDir() string { return filepath.Join(p.node.podsDir, p.PodUID) }

// VolumeDir is the pod's libvirt-runtime emptyDir in the real pods directory.
func (p *LauncherPod) VolumeDir() string { return filepath.Join(p.PodDir(), LauncherVolumeRelPath) }

// SocketPath is <Node.PodsDir>/<PodUID>/volumes/kubernetes.io~empty-dir/
// libvirt-runtime/virtqemud-sock: the launcher socket as a collector dials it.
func (p *LauncherPod) SocketPath() string {
	return filepath.Join(p.node.shortDir, p.PodUID, LauncherVolumeRelPath, LauncherSocketName)
}

// StatusFile is where the pod's libvirtd keeps the guest's status XML (a session
// daemon: <VolumeDir>/qemu/run/<Domain>.xml).
func (p *LauncherPod) StatusFile() string { return p.Libvirtd.StatusFile(p.Domain()) }

// RuntimeUser is the uid the pod's libvirtd runs as, KubeVirt's status.runtimeUser.
func (p *LauncherPod) RuntimeUser() int64 { return p.runtimeUser }

// RunningStatus is the VMI status KubeVirt sets while this pod runs the VMI on its
// node: phase Running, nodeName, activePods {PodUID: node} and runtimeUser.
func (p *LauncherPod) RunningStatus() VMIStatus {
	ru := p.runtimeUser
	return VMIStatus{
		Phase:       "Running",
		NodeName:    p.node.name,
		ActivePods:  map[string]string{p.PodUID: p.node.name},
		RuntimeUser: &ru,
	}
}

// Stop stops the pod's libvirtd and guest and removes the pod directory, as when
// the VMI's launcher pod is deleted. It is idempotent.
func (p *LauncherPod) Stop() error {
	n := p.node
	n.mu.Lock()
	n.pods = slices.DeleteFunc(n.pods, func(q *LauncherPod) bool { return q == p })
	n.mu.Unlock()
	return p.teardown()
}

func (p *LauncherPod) teardown() error {
	p.stopOnce.Do(func() {
		if p.Libvirtd != nil {
			p.stopErr = p.Libvirtd.Stop()
		}
		p.stopErr = errors.Join(p.stopErr, os.RemoveAll(p.PodDir()))
	})
	return p.stopErr
}

// Stop stops every launcher pod (their daemons, guests and virtlogd) and removes
// the pod directories, the short symlink and a pods directory StartNode created.
// It is idempotent.
func (n *Node) Stop() error {
	n.mu.Lock()
	if n.stopped {
		n.mu.Unlock()
		return nil
	}
	n.stopped = true
	pods := n.pods
	n.pods = nil
	n.mu.Unlock()

	var errs []error
	// In parallel: each daemon's Stop may wait for a QEMU to go away.
	var wg sync.WaitGroup
	errc := make(chan error, len(pods))
	for _, p := range pods {
		wg.Go(func() { errc <- p.teardown() })
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		errs = append(errs, err)
	}
	if n.ownShortDir {
		if err := os.Remove(n.shortDir); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if n.ownPodsDir && n.podsDir != "" {
		errs = append(errs, os.RemoveAll(n.podsDir))
	}
	if n.reaper != nil {
		_ = n.reaper.Process.Kill()
		_ = n.reaper.Wait()
		n.reaperPipe.Close()
	}
	return errors.Join(errs...)
}

// MustStartNode starts a node for a test and stops it in tb.Cleanup, failing the
// test on any error.
func MustStartNode(tb TB, opts NodeOptions) *Node {
	tb.Helper()
	RequireDaemons(tb, "launcher pods with libvirtd and QEMU guests")
	if _, err := LookupLibvirtd(); err != nil {
		Unavailable(tb, "%v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n, err := StartNode(ctx, opts)
	if err != nil {
		tb.Fatalf("starting node: %v", err)
	}
	tb.Cleanup(func() {
		if err := n.Stop(); err != nil {
			tb.Errorf("stopping node: %v", err)
		}
	})
	return n
}

// newUID returns a random (version 4) UUID, the form of Kubernetes pod UIDs.
func newUID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}

// userID returns the uid of the account name.
func userID(name string) (int64, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(u.Uid, 10, 64)
}
