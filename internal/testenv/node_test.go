package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"
)

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// TestNodeLaunchers starts two launcher pods and checks the kubelet layout a
// collector relies on, then that Stop leaves nothing behind.
func TestNodeLaunchers(t *testing.T) {
	n := MustStartNode(t, NodeOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	if len(n.PodsDir()) > MaxPodsDirLen {
		t.Errorf("PodsDir %s is %d bytes, want at most %d", n.PodsDir(), len(n.PodsDir()), MaxPodsDirLen)
	}
	if MaxPodsDirLen != 7 {
		t.Errorf("MaxPodsDirLen = %d, want 7 (107 - len(\"/<36>/volumes/kubernetes.io~empty-dir/libvirt-runtime/virtqemud-sock\"))", MaxPodsDirLen)
	}
	if got, err := filepath.EvalSymlinks(n.PodsDir()); err != nil || got != n.RealPodsDir() {
		t.Errorf("PodsDir %s resolves to %s (err %v), want %s", n.PodsDir(), got, err, n.RealPodsDir())
	}

	accelerated := "qemu"
	if ok, why := KVMUsable(); ok {
		accelerated = "kvm"
	} else {
		t.Logf("no kvm launcher: %s", why)
	}
	start := time.Now()
	a, err := n.StartLauncher(ctx, "default", "my-vm", accelerated)
	if err != nil {
		t.Fatalf("StartLauncher: %v", err)
	}
	t.Logf("%s launcher up in %v", accelerated, time.Since(start).Round(time.Millisecond))
	b, err := n.StartLauncher(ctx, "legacy", "emulated-vm", "qemu")
	if err != nil {
		t.Fatalf("StartLauncher: %v", err)
	}
	if got := n.Launchers(); len(got) != 2 || got[0] != a || got[1] != b {
		t.Errorf("Launchers() = %v, want [a b]", got)
	}

	for _, p := range []*LauncherPod{a, b} {
		checkLauncherPod(t, n, p)
	}

	// Deleting one pod leaves the other alone.
	bPID, _ := b.Libvirtd.GuestPID(b.Domain())
	if err := b.Stop(); err != nil {
		t.Fatalf("LauncherPod.Stop: %v", err)
	}
	if _, err := os.Stat(b.PodDir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pod dir after LauncherPod.Stop: err = %v, want not exist", err)
	}
	waitGone(t, bPID)
	if got := n.Launchers(); len(got) != 1 || got[0] != a {
		t.Errorf("Launchers() after stopping b = %v, want [a]", got)
	}
	checkLiveDomain(t, a.Libvirtd, a.Domain(), a.DomainType)
	if err := b.Stop(); err != nil {
		t.Errorf("second LauncherPod.Stop: %v", err)
	}

	// Node.Stop: no daemon, guest or virtlogd left, no directories, no symlink.
	procs := map[string]int{"libvirtd": a.Libvirtd.PID()}
	if pid, err := a.Libvirtd.GuestPID(a.Domain()); err == nil {
		procs["guest"] = pid
	} else {
		t.Errorf("GuestPID: %v", err)
	}
	if pid, err := readPIDFile(filepath.Join(a.VolumeDir(), "virtlogd.pid")); err == nil {
		procs["virtlogd"] = pid
	} else {
		t.Errorf("virtlogd pid: %v", err)
	}
	home := a.Libvirtd.homeDir
	if err := n.Stop(); err != nil {
		t.Fatalf("Node.Stop: %v", err)
	}
	for what, pid := range procs {
		if alive(pid) {
			t.Errorf("%s (pid %d) still running after Node.Stop", what, pid)
		}
	}
	if left, err := pidsWithEnv("HOME=" + home); err != nil || len(left) > 0 {
		t.Errorf("processes with HOME=%s after Node.Stop: %v (err %v)", home, left, err)
	}
	for _, p := range []string{n.PodsDir(), n.RealPodsDir()} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s after Node.Stop: err = %v, want not exist", p, err)
		}
	}
	if err := n.Stop(); err != nil {
		t.Errorf("second Node.Stop: %v", err)
	}
	if _, err := n.StartLauncher(ctx, "x", "y", "qemu"); err == nil {
		t.Errorf("StartLauncher after Stop succeeded")
	}
}

// checkLauncherPod checks one pod against the layout of a real KubeVirt node.
func checkLauncherPod(t *testing.T, n *Node, p *LauncherPod) {
	t.Helper()
	if !uuidRE.MatchString(p.PodUID) {
		t.Errorf("PodUID %q is not a v4 UUID", p.PodUID)
	}
	vol := filepath.Join(n.RealPodsDir(), p.PodUID, "volumes", "kubernetes.io~empty-dir", "libvirt-runtime")
	if p.VolumeDir() != vol {
		t.Errorf("VolumeDir = %s, want %s", p.VolumeDir(), vol)
	}
	sock := n.PodsDir() + "/" + p.PodUID + "/volumes/kubernetes.io~empty-dir/libvirt-runtime/virtqemud-sock"
	if p.SocketPath() != sock || len(sock) > maxSocketPath {
		t.Errorf("SocketPath = %s (%d bytes), want %s within %d bytes", p.SocketPath(), len(p.SocketPath()), sock, maxSocketPath)
	}
	if target, err := os.Readlink(filepath.Join(vol, "virtqemud-sock")); err != nil || target != LibvirtdSocketName {
		t.Errorf("virtqemud-sock -> %q (err %v), want -> %s", target, err, LibvirtdSocketName)
	}
	if st, err := os.Stat(filepath.Join(vol, LibvirtdSocketName)); err != nil || st.Mode().Type() != os.ModeSocket {
		t.Errorf("libvirtd's socket in the emptyDir: %v (err %v), want a socket", st, err)
	}
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Errorf("dialling %s: %v", sock, err)
	} else {
		c.Close()
	}
	if want := filepath.Join(vol, "qemu", "run", p.Domain()+".xml"); p.StatusFile() != want {
		t.Errorf("StatusFile = %s, want %s", p.StatusFile(), want)
	}
	checkStatusFile(t, p.Libvirtd, p.Domain(), p.DomainType)
	checkLiveDomain(t, p.Libvirtd, p.Domain(), p.DomainType)

	want, err := userID(p.Libvirtd.User())
	if err != nil {
		t.Fatal(err)
	}
	if p.RuntimeUser() != want || (os.Geteuid() == 0 && p.RuntimeUser() == 0) {
		t.Errorf("RuntimeUser = %d, want %d (the daemon user %s), never 0 under root", p.RuntimeUser(), want, p.Libvirtd.User())
	}
	st := p.RunningStatus()
	if st.Phase != "Running" || st.NodeName != n.Name() || len(st.ActivePods) != 1 ||
		st.ActivePods[p.PodUID] != n.Name() || st.RuntimeUser == nil || *st.RuntimeUser != p.RuntimeUser() {
		t.Errorf("RunningStatus = %+v", st)
	}
}

// TestNodeCleanupAfterOwnerDies kills a process that started a node with a
// launcher, without letting it call Stop: the watchdogs must remove its processes
// and directories.
func TestNodeCleanupAfterOwnerDies(t *testing.T) {
	if os.Getenv("TESTENV_NODE_OWNER_CHILD") == "1" {
		nodeOwnerChild()
		return
	}
	RequireDaemons(t, "a launcher pod with libvirtd and a QEMU guest")
	if _, err := LookupLibvirtd(); err != nil {
		Unavailable(t, "%v", err)
	}
	line := killedOwnerReport(t, "TestNodeCleanupAfterOwnerDies", "TESTENV_NODE_OWNER_CHILD=1")
	var link, dir, home string
	var guest int
	if _, err := fmt.Sscan(line, &link, &dir, &home, &guest); err != nil {
		t.Fatalf("child reported %q: %v", line, err)
	}

	deadline := time.Now().Add(15 * time.Second)
	for {
		left, _ := pidsWithEnv("HOME=" + home)
		_, linkErr := os.Lstat(link)
		_, dirErr := os.Stat(dir)
		if len(left) == 0 && !alive(guest) && errors.Is(linkErr, os.ErrNotExist) && errors.Is(dirErr, os.ErrNotExist) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the owner died: processes %v, guest alive %v, symlink %s: %v, pods dir %s: %v",
				left, alive(guest), link, linkErr, dir, dirErr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// nodeOwnerChild starts a node with one launcher, reports it on stdout and waits
// to be killed.
func nodeOwnerChild() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	n, err := StartNode(ctx, NodeOptions{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	p, err := n.StartLauncher(ctx, "default", "orphan", "qemu")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	pid, _ := p.Libvirtd.GuestPID(p.Domain())
	fmt.Println(n.PodsDir(), n.RealPodsDir(), p.Libvirtd.homeDir, pid)
	time.Sleep(time.Hour) // until the parent kills us
}
