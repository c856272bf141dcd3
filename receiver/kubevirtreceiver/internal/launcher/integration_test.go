package launcher_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/util/wait"
	"libvirt.org/go/libvirt"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/hypervisor"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/launcher"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/vmi"
)

// TestLaunchersOnANode runs the lab's node layout (one session-mode libvirtd per
// launcher pod, as an unprivileged user, socket at the kubelet path, a real guest
// each) with VMIs in a real kube-apiserver, and checks that what Find derives from
// the VMIs' status reaches each launcher's libvirt: the live XML over the socket and
// the status file both say the right hypervisor.
func TestLaunchersOnANode(t *testing.T) {
	t.Parallel()
	api := testenv.MustStartAPIServer(t)
	node := testenv.MustStartNode(t, testenv.NodeOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	if launcher.MaxPodsDirLen != testenv.MaxPodsDirLen || launcher.VolumeRelPath != testenv.LauncherVolumeRelPath ||
		launcher.VirtqemudSocket != testenv.LauncherSocketName {
		t.Fatalf("launcher and testenv disagree on the kubelet layout")
	}

	accelerated := hypervisor.QEMUTCG
	if ok, why := testenv.KVMUsable(); ok {
		accelerated = hypervisor.KVM
	} else {
		t.Logf("no KVM here (%s): both guests run under TCG", why)
	}
	vms := []struct {
		ns, name, domainType string
		want                 hypervisor.Type
	}{
		{"default", "my-vm", map[hypervisor.Type]string{hypervisor.KVM: "kvm", hypervisor.QEMUTCG: "qemu"}[accelerated], accelerated},
		{"legacy", "emulated-vm", "qemu", hypervisor.QEMUTCG},
	}
	for _, v := range vms {
		pod, err := node.StartLauncher(ctx, v.ns, v.name, v.domainType)
		if err != nil {
			t.Fatalf("StartLauncher(%s/%s): %v", v.ns, v.name, err)
		}
		if err := api.CreateVMI(ctx, v.ns, v.name); err != nil {
			t.Fatal(err)
		}
		if err := api.SetVMIStatus(ctx, v.ns, v.name, pod.RunningStatus()); err != nil {
			t.Fatal(err)
		}

		// What the receiver has: the slim view of the VMI from its watch.
		slim := watchedVMI(ctx, t, api, node.Name(), vmi.Key(v.ns, v.name))
		ls, err := launcher.Find(node.PodsDir(), slim)
		if err != nil {
			t.Fatalf("Find(%s/%s): %v", v.ns, v.name, err)
		}
		if len(ls) != 1 || ls[0].Socket != pod.SocketPath() {
			t.Fatalf("Find(%s/%s) = %+v, want pod %s with socket %s", v.ns, v.name, ls, pod.PodUID, pod.SocketPath())
		}
		l := ls[0]
		if !strings.HasPrefix(l.URI, "qemu+unix:///session?") {
			t.Errorf("URI for runtimeUser %d = %s, want a session URI", slim.RuntimeUser, l.URI)
		}

		// Over the socket.
		live := liveDomainXML(t, l.URI, l.Domain)
		if got, err := hypervisor.Detect(live); err != nil || got.Type != v.want {
			t.Errorf("%s over %s: Detect = %+v, %v; want %s", l.Domain, l.URI, got, err, v.want)
		}

		// From the status file: the path Find predicts is the one libvirt writes.
		realStatus, err := filepath.EvalSymlinks(l.StatusFile)
		if err != nil {
			t.Fatalf("status file %s: %v", l.StatusFile, err)
		}
		if realStatus != pod.StatusFile() {
			t.Errorf("Find's status file %s is %s, libvirt's is %s", l.StatusFile, realStatus, pod.StatusFile())
		}
		doc, err := l.ReadStatus()
		if err != nil {
			t.Fatalf("ReadStatus: %v", err)
		}
		got, err := hypervisor.Detect(doc)
		if err != nil || got.Type != v.want {
			t.Errorf("%s from %s: Detect = %+v, %v; want %s", l.Domain, l.StatusFile, got, err, v.want)
		}
		logStatusFile(t, l.StatusFile, doc)
	}
}

// watchedVMI returns the VMI key as a watch of node's VMIs sees it, once it is there.
func watchedVMI(ctx context.Context, t *testing.T, api *testenv.APIServer, node, key string) *vmi.VMI {
	t.Helper()
	w, err := vmi.NewWatcher(api.Config, node, zap.NewNop(), vmi.WatcherHandlers{Changed: func(string) {}})
	if err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(ctx)
	w.Start(wctx)
	defer func() { stop(); w.Shutdown() }()
	var v *vmi.VMI
	if err := wait.PollUntilContextCancel(ctx, 10*time.Millisecond, true, func(context.Context) (bool, error) {
		var ok bool
		v, ok = w.Get(key)
		return ok && v.Phase == vmi.PhaseRunning, nil
	}); err != nil {
		t.Fatalf("%s never Running in the watch: %v", key, err)
	}
	return v
}

// liveDomainXML fetches the running domain's XML over uri.
func liveDomainXML(t *testing.T, uri, domain string) string {
	t.Helper()
	conn, err := libvirt.NewConnect(uri)
	if err != nil {
		t.Fatalf("connecting to %s: %v", uri, err)
	}
	defer conn.Close()
	dom, err := conn.LookupDomainByName(domain)
	if err != nil {
		t.Fatalf("looking up %s: %v", domain, err)
	}
	defer dom.Free()
	x, err := dom.GetXMLDesc(0)
	if err != nil {
		t.Fatalf("GetXMLDesc(%s): %v", domain, err)
	}
	return x
}

// logStatusFile records what the status file looks like, for whoever relies on it.
func logStatusFile(t *testing.T, path, doc string) {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(doc, "<domstatus ") {
		t.Errorf("status file %s has no <domstatus>", path)
	}
	t.Logf("status file %s: %d bytes, mode %o, uid %d; <domstatus> at byte %d, <domain at byte %d",
		path, len(doc), st.Mode&0o7777, st.Uid, strings.Index(doc, "<domstatus"), strings.Index(doc, "<domain "))
}

// TestFallbackURIAgainstSessionDaemon: a VMI whose status says runtimeUser 0 (a
// root launcher, or no runtimeUser at all) but whose launcher runs unprivileged.
// The daemon refuses /system; IsPathRefused recognises that and the fallback works.
// The root status-file path does not exist, so the caller ends up on the socket.
func TestFallbackURIAgainstSessionDaemon(t *testing.T) {
	t.Parallel()
	node := testenv.MustStartNode(t, testenv.NodeOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pod, err := node.StartLauncher(ctx, "default", "mislabelled", "qemu")
	if err != nil {
		t.Fatal(err)
	}
	ls, err := launcher.Find(node.PodsDir(), &vmi.VMI{
		Namespace: "default", Name: "mislabelled", Pods: []string{pod.PodUID}, RuntimeUser: 0,
	})
	if err != nil {
		t.Fatal(err)
	}
	l := ls[0]
	if !strings.HasPrefix(l.URI, "qemu+unix:///system?") {
		t.Fatalf("URI for runtimeUser 0 = %s, want a system URI", l.URI)
	}
	conn, err := libvirt.NewConnect(l.URI)
	if err == nil {
		conn.Close()
		t.Fatalf("a session daemon accepted %s", l.URI)
	}
	t.Logf("session daemon refusing %s: %v", l.URI, err)
	if !launcher.IsPathRefused(err) {
		t.Errorf("IsPathRefused(%v) = false", err)
	}
	live := liveDomainXML(t, l.FallbackURI, l.Domain)
	if got, err := hypervisor.Detect(live); err != nil || got.Type != hypervisor.QEMUTCG {
		t.Errorf("over the fallback URI %s: Detect = %+v, %v; want %s", l.FallbackURI, got, err, hypervisor.QEMUTCG)
	}

	_, err = l.ReadStatus()
	if !errors.Is(err, launcher.ErrNoStatusFile) {
		t.Errorf("ReadStatus at the root path of a non-root launcher: err = %v, want ErrNoStatusFile", err)
	}

	// A socket that is not there (the pod is gone, or not up yet) is not a refusal.
	missing, _ := launcher.URIs(filepath.Join(node.PodsDir(), "00000000-0000-4000-8000-000000000000", launcher.VolumeRelPath, launcher.VirtqemudSocket))
	if _, err := libvirt.NewConnect(missing); err == nil || launcher.IsPathRefused(err) {
		t.Errorf("connecting to a missing socket: err = %v, want an error that is no path refusal", err)
	} else {
		t.Logf("missing socket: %v", err)
	}
}

// TestSocketPathLimitAgainstLibvirt proves MaxSocketPath and the URI escaping
// with the real libvirt client: a socket path of exactly 107 bytes can be dialled,
// one of 108 cannot, and odd characters in the path survive the URI.
func TestSocketPathLimitAgainstLibvirt(t *testing.T) {
	t.Parallel()
	node := testenv.MustStartNode(t, testenv.NodeOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pod, err := node.StartLauncher(ctx, "default", "limits", "qemu")
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("/tmp", "launcher-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })

	link := func(path string) string {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(pod.SocketPath(), path); err != nil {
			t.Fatal(err)
		}
		return path
	}
	pad := func(n int) string { // a path of exactly n bytes below dir
		return filepath.Join(dir, strings.Repeat("x", n-len(dir)-1))
	}
	for _, tc := range []struct {
		path string
		ok   bool
	}{
		{link(pad(launcher.MaxSocketPath)), true},
		{link(pad(launcher.MaxSocketPath + 1)), false},
		{link(filepath.Join(dir, "a b&c=d#e?f%g+h", "sock")), true},
	} {
		session, _ := launcher.URIs(tc.path)
		conn, err := libvirt.NewConnect(session)
		if err == nil {
			conn.Close()
		}
		if (err == nil) != tc.ok {
			t.Errorf("%d-byte socket path %q: err = %v, want success %v", len(tc.path), tc.path, err, tc.ok)
		} else if err != nil {
			t.Logf("%d-byte socket path: %v", len(tc.path), err)
		}
	}
}

// TestMinimalPrivileges checks the DaemonSet's securityContext (root, all
// capabilities dropped but DAC_OVERRIDE): with DAC_OVERRIDE a root process reaches
// an unprivileged launcher's socket and status file, without it neither.
func TestMinimalPrivileges(t *testing.T) {
	if spec := os.Getenv("LAUNCHER_PRIVILEGE_CHILD"); spec != "" {
		privilegeChild(spec)
		return
	}
	if os.Geteuid() != 0 {
		testenv.Unavailable(t, "needs root to drop capabilities from")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		testenv.Unavailable(t, "%v", err)
	}
	node := testenv.MustStartNode(t, testenv.NodeOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pod, err := node.StartLauncher(ctx, "default", "caps", "qemu")
	if err != nil {
		t.Fatal(err)
	}
	ls, err := launcher.Find(node.PodsDir(), &vmi.VMI{
		Namespace: "default", Name: "caps", Pods: []string{pod.PodUID}, RuntimeUser: pod.RuntimeUser(),
	})
	if err != nil {
		t.Fatal(err)
	}
	spec, err := json.Marshal(ls[0])
	if err != nil {
		t.Fatal(err)
	}
	for caps, want := range map[string]string{
		"-all,+dac_override": "socket ok, status ok",
		"-all":               "socket denied, status denied",
	} {
		// For uid 0 the bounding set becomes the permitted set across exec.
		cmd := exec.Command(setpriv, "--bounding-set", caps, "--", os.Args[0], "-test.run=^TestMinimalPrivileges$")
		cmd.Env = append(os.Environ(), "LAUNCHER_PRIVILEGE_CHILD="+string(spec))
		out, err := cmd.Output()
		got := strings.TrimSpace(string(out))
		if lines := strings.Split(got, "\n"); len(lines) > 0 {
			got = lines[0] // the test binary prints PASS after it
		}
		if err != nil || got != want {
			t.Errorf("capabilities %s: child says %q (err %v), want %q", caps, got, err, want)
		}
	}
}

// privilegeChild tries the launcher in spec and prints what worked.
func privilegeChild(spec string) {
	var l launcher.Launcher
	if err := json.Unmarshal([]byte(spec), &l); err != nil {
		panic(err)
	}
	res := []string{"socket ok", "status ok"}
	if conn, err := libvirt.NewConnect(l.URI); err != nil {
		res[0] = "socket other error: " + err.Error()
		if strings.Contains(err.Error(), "Permission denied") {
			res[0] = "socket denied"
		}
	} else {
		conn.Close()
	}
	if _, err := l.ReadStatus(); err != nil {
		res[1] = "status other error: " + err.Error()
		if errors.Is(err, os.ErrPermission) {
			res[1] = "status denied"
		}
	}
	os.Stdout.WriteString(strings.Join(res, ", ") + "\n")
}
