package launcher_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"libvirt.org/go/libvirt"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv/tied"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/hypervisor"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/launcher"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/vmi"
)

// rootLauncherScript runs libvirtd as root, i.e. in system mode, the way a root
// virt-launcher does: in its own mount namespace, with /run/libvirt being the pod's
// libvirt-runtime emptyDir ($1). Everything else libvirt touches in system mode is a
// private tmpfs or the private config in $2, so the host is left alone. Debian's
// libvirt insists on its compiled-in QEMU user libvirt-qemu existing, which only
// the libvirt-daemon-system package creates, hence the private passwd and group.
const rootLauncherScript = `set -e
mount --make-rprivate /
mount -t tmpfs tmpfs /run && mkdir -p /run/libvirt && mount --bind "$1" /run/libvirt
for d in /var/lib /var/cache /var/log; do mount -t tmpfs tmpfs $d && mkdir -p $d/libvirt; done
mount --bind "$2/etc" /etc/libvirt
mount --bind "$2/passwd" /etc/passwd
mount --bind "$2/group" /etc/group
exec "$3" --config /etc/libvirt/libvirtd.conf
`

// startRootLauncher lays out a root launcher pod on node and returns its UID once
// its libvirtd answers. The daemon and the guests are killed in t.Cleanup.
func startRootLauncher(t *testing.T, node *testenv.Node) string {
	t.Helper()
	binary, err := testenv.LookupLibvirtd()
	if err != nil {
		testenv.Unavailable(t, "%v", err)
	}
	if os.Geteuid() != 0 {
		testenv.Unavailable(t, "a root launcher needs root")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		testenv.Unavailable(t, "%v", err)
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6], b[8] = b[6]&0x0f|0x40, b[8]&0x3f|0x80 // a version 4 UUID, like pod UIDs
	uid := fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
	vol := filepath.Join(node.RealPodsDir(), uid, launcher.VolumeRelPath)
	if err := os.MkdirAll(vol, 0o755); err != nil {
		t.Fatal(err)
	}
	priv := t.TempDir()
	writeFile(t, filepath.Join(priv, "etc", "libvirtd.conf"), `unix_sock_dir = "/run/libvirt"`+"\n")
	// No cgroups, namespaces, security labels or virtlogd: none exist in a test
	// container, and none change where libvirt keeps state.
	writeFile(t, filepath.Join(priv, "etc", "qemu.conf"), `user = "root"
group = "root"
dynamic_ownership = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "file"
`)
	for _, f := range []struct{ name, extra string }{
		{"passwd", "libvirt-qemu:x:64055:64055::/var/lib/libvirt:/usr/sbin/nologin\n"},
		{"group", "libvirt-qemu:x:64055:\n"},
	} {
		b, err := os.ReadFile(filepath.Join("/etc", f.name))
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(priv, f.name), string(b)+f.extra)
	}
	logf, err := os.Create(filepath.Join(priv, "libvirtd.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(unshare, "-m", "/bin/sh", "-c", rootLauncherScript, "root-launcher", vol, priv, binary)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	exited := make(chan struct{})
	var exitErr error
	if err := tied.Start(cmd, func(err error) { exitErr = err; close(exited) }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		select {
		case <-exited: // nothing here stops it before this point
			b, _ := os.ReadFile(logf.Name())
			t.Errorf("the root libvirtd exited during the test (%v); its log:\n%s", exitErr, b)
		default:
		}
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
		// QEMU daemonizes out of the process group; libvirt left its pid here.
		pids, _ := filepath.Glob(filepath.Join(vol, "qemu", "*.pid"))
		for _, p := range pids {
			if b, err := os.ReadFile(p); err == nil && !strings.HasSuffix(p, "/driver.pid") {
				if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
	})
	if err := os.Symlink("libvirt-sock", filepath.Join(vol, launcher.VirtqemudSocket)); err != nil {
		t.Fatal(err)
	}

	// The first call waits for libvirt to probe QEMU (a few seconds, no cache here).
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Dialled through the short pods path: the real one is too long for a socket.
	_, system := launcher.URIs(filepath.Join(node.PodsDir(), uid, launcher.VolumeRelPath, launcher.VirtqemudSocket))
	var lastErr error
	err = wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, func(context.Context) (bool, error) {
		select {
		case <-exited:
			b, _ := os.ReadFile(logf.Name())
			return false, fmt.Errorf("root libvirtd exited:\n%s", b)
		default:
		}
		if _, lastErr = os.Stat(filepath.Join(vol, "libvirt-sock")); lastErr != nil {
			return false, nil
		}
		conn, err := libvirt.NewConnect(system)
		if lastErr = err; err != nil {
			return false, nil
		}
		defer conn.Close()
		_, lastErr = conn.GetVersion()
		return lastErr == nil, nil
	})
	if err != nil {
		b, _ := os.ReadFile(logf.Name())
		t.Fatalf("root libvirtd not answering on %s: %v (last error: %v)\n%s", system, err, lastErr, b)
	}
	return uid
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestRootLauncher proves the root launcher's layout against a real system-mode
// libvirtd: the status file is libvirt-runtime/qemu/<ns>_<name>.xml (no run/), the
// /system URI works, and so does the /session fallback (libvirt lets /session
// through to a root QEMU driver for compatibility).
func TestRootLauncher(t *testing.T) {
	t.Parallel()
	node := testenv.MustStartNode(t, testenv.NodeOptions{})
	uid := startRootLauncher(t, node)

	ls, err := launcher.Find(node.PodsDir(), &vmi.VMI{
		Namespace: "legacy", Name: "root-vm", Pods: []string{uid}, RuntimeUser: 0,
	})
	if err != nil {
		t.Fatal(err)
	}
	l := ls[0]
	if !strings.HasPrefix(l.URI, "qemu+unix:///system?") {
		t.Fatalf("URI for runtimeUser 0 = %s, want a system URI", l.URI)
	}
	if _, err := l.ReadStatus(); !errors.Is(err, launcher.ErrNoStatusFile) {
		t.Errorf("ReadStatus before the guest runs: err = %v, want ErrNoStatusFile", err)
	}

	conn, err := libvirt.NewConnect(l.URI)
	if err != nil {
		t.Fatalf("connecting to %s: %v", l.URI, err)
	}
	defer conn.Close()
	x, err := testenv.DomainXML(l.Domain, "qemu")
	if err != nil {
		t.Fatal(err)
	}
	dom, err := conn.DomainCreateXML(x, 0)
	if err != nil {
		t.Fatalf("starting %s: %v", l.Domain, err)
	}
	defer dom.Free()

	live := liveDomainXML(t, l.URI, l.Domain)
	if got, err := hypervisor.Detect(live); err != nil || got.Type != hypervisor.QEMUTCG {
		t.Errorf("over %s: Detect = %+v, %v; want qemu-tcg", l.URI, got, err)
	}
	live = liveDomainXML(t, l.FallbackURI, l.Domain)
	if got, err := hypervisor.Detect(live); err != nil || got.Type != hypervisor.QEMUTCG {
		t.Errorf("over the fallback %s: Detect = %+v, %v; want qemu-tcg", l.FallbackURI, got, err)
	}

	if want := filepath.Join(l.RuntimeDir, "qemu", "legacy_root-vm.xml"); l.StatusFile != want {
		t.Errorf("StatusFile = %s, want %s", l.StatusFile, want)
	}
	doc, err := l.ReadStatus()
	if err != nil {
		t.Fatalf("ReadStatus: %v", err)
	}
	if got, err := hypervisor.Detect(doc); err != nil || got.Type != hypervisor.QEMUTCG {
		t.Errorf("from %s: Detect = %+v, %v; want qemu-tcg", l.StatusFile, got, err)
	}
	logStatusFile(t, l.StatusFile, doc)
	if _, err := os.Stat(filepath.Join(l.RuntimeDir, "qemu", "run", l.Domain+".xml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a root daemon also wrote qemu/run/%s.xml (err %v)", l.Domain, err)
	}

	if err := dom.Destroy(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.ReadStatus(); !errors.Is(err, launcher.ErrNoStatusFile) {
		t.Errorf("ReadStatus after the guest stopped: err = %v, want ErrNoStatusFile", err)
	}
}
