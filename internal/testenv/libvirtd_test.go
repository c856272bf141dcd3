package testenv

import (
	"bufio"
	"context"
	"encoding/xml"
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

	"libvirt.org/go/libvirt"
	"libvirt.org/go/libvirtxml"
)

// startLibvirtdForTest is MustStartLibvirtd plus a log of the startup time:
// it skips when libvirtd is not installed (the only reason to skip), fails
// on any other error and stops the daemon when the test ends.
func startLibvirtdForTest(t *testing.T, opts LibvirtdOptions) *Libvirtd {
	t.Helper()
	RequireDaemons(t, "libvirtd")
	if _, err := LookupLibvirtd(); err != nil {
		Unavailable(t, "%v", err)
	}
	if opts.CapsCacheDir == "" {
		opts.CapsCacheDir = DefaultCapsCacheDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	d, err := StartLibvirtd(ctx, opts)
	if err != nil {
		t.Fatalf("StartLibvirtd: %v", err)
	}
	t.Logf("libvirtd (pid %d, user %s) answered after %v on %s", d.PID(), d.User(), time.Since(start).Round(time.Millisecond), d.URI())
	t.Cleanup(func() {
		if err := d.Stop(); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return d
}

func TestLibvirtdGuests(t *testing.T) {
	d := startLibvirtdForTest(t, LibvirtdOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	if want := "qemu+unix:///session?socket=" + d.RuntimeDir() + "/libvirt/libvirt-sock"; d.URI() != want {
		t.Errorf("URI() = %q, want %q", d.URI(), want)
	}

	types := []string{"qemu"}
	if ok, why := d.KVMUsable(); ok {
		types = append(types, "kvm")
	} else {
		t.Logf("no kvm guest: %s", why)
	}

	guests := map[string]string{} // domain name -> type
	for _, typ := range types {
		name := "default_vm-" + typ
		start := time.Now()
		if err := d.StartGuest(ctx, name, typ); err != nil {
			t.Fatalf("StartGuest(%s, %s): %v", name, typ, err)
		}
		t.Logf("%s guest %s started in %v", typ, name, time.Since(start).Round(time.Millisecond))
		guests[name] = typ
	}

	for name, typ := range guests {
		checkLiveDomain(t, d, name, typ)
		checkStatusFile(t, d, name, typ)
		// The harness pins libvirtd to one CPU (see pinToFirstCPU); libvirt
		// must widen the guests' affinity again.
		pid, _ := d.GuestPID(name)
		// thread-self: this goroutine never runs on the pinned, locked thread.
		if got, want := cpusAllowed(t, strconv.Itoa(pid)), cpusAllowed(t, "thread-self"); got != want {
			t.Errorf("guest %s may run on CPUs %s, want %s like this process", name, got, want)
		}
	}

	// Guests must survive the daemon going away, orderly or not, and
	// libvirtd must re-attach to them: the receiver's and internal/domain's
	// tests of a libvirtd restart or crash depend on it.
	pids := guestPIDs(t, d, guests)
	start := time.Now()
	if err := d.Restart(ctx); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	t.Logf("Restart took %v", time.Since(start).Round(time.Millisecond))
	checkReattached(t, d, guests, pids)

	start = time.Now()
	if err := d.KillDaemon(syscall.SIGKILL); err != nil {
		t.Fatalf("KillDaemon(SIGKILL): %v", err)
	}
	t.Logf("KillDaemon(SIGKILL) took %v", time.Since(start).Round(time.Millisecond))
	if d.PID() != 0 {
		t.Errorf("PID() = %d after KillDaemon, want 0", d.PID())
	}
	if conn, err := libvirt.NewConnect(d.URI()); err == nil {
		conn.Close()
		t.Errorf("connecting to a killed daemon succeeded")
	}
	for name := range guests {
		if _, err := os.Stat(d.StatusFile(name)); err != nil {
			t.Errorf("status file gone while libvirtd is down: %v", err)
		}
	}
	start = time.Now()
	if err := d.StartDaemon(ctx); err != nil {
		t.Fatalf("StartDaemon after SIGKILL: %v", err)
	}
	t.Logf("StartDaemon after SIGKILL took %v", time.Since(start).Round(time.Millisecond))
	checkReattached(t, d, guests, pids)

	// DestroyGuest removes the guest and libvirt its status file.
	start = time.Now()
	if err := d.DestroyGuest("default_vm-qemu"); err != nil {
		t.Fatalf("DestroyGuest: %v", err)
	}
	t.Logf("DestroyGuest took %v", time.Since(start).Round(time.Millisecond))
	if _, err := os.Stat(d.StatusFile("default_vm-qemu")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("status file after DestroyGuest: err = %v, want not exist", err)
	}
	waitGone(t, pids["default_vm-qemu"])
	delete(guests, "default_vm-qemu")

	// Stop must leave nothing behind: not the daemon, not the remaining
	// guests, not virtlogd, and not the private directory.
	procs := map[string]int{"libvirtd": d.PID()}
	for name := range guests {
		procs[name] = pids[name]
	}
	if pid, err := readPIDFile(filepath.Join(d.LibvirtRuntimeDir(), "virtlogd.pid")); err == nil {
		procs["virtlogd"] = pid
	} else {
		t.Logf("no virtlogd pid: %v", err)
	}
	home, dir := d.homeDir, d.Dir()
	start = time.Now()
	if err := d.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	t.Logf("Stop took %v", time.Since(start).Round(time.Millisecond))
	for what, pid := range procs {
		if alive(pid) {
			t.Errorf("%s (pid %d) still running after Stop", what, pid)
		}
	}
	if left, err := pidsWithEnv("HOME=" + home); err != nil || len(left) > 0 {
		t.Errorf("processes with HOME=%s after Stop: %v (err %v)", home, left, err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Dir %s after Stop: err = %v, want not exist", dir, err)
	}
	if err := d.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

// TestLibvirtdKubeletLayout runs the daemon the way a Node's launcher pods do: its
// libvirt runtime directory is a kubelet-style emptyDir whose path is far too
// long for unix sockets.
func TestLibvirtdKubeletLayout(t *testing.T) {
	// t.TempDir() is <TMPDIR>/<TestName><random>/<NNN>, and the middle one is
	// 0700; the daemon user needs to get through both. Touch nothing above.
	root := t.TempDir()
	for _, p := range []string{filepath.Dir(root), root} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	volume := filepath.Join(root, "pods", "6f1c2a4e-8d3b-4c9a-b7e5-0a1b2c3d4e5f", "volumes", "kubernetes.io~empty-dir", "libvirt-runtime")
	d := MustStartLibvirtd(t, LibvirtdOptions{LibvirtRuntimeDir: volume})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	const name = "kube-system_lab-vm"
	if err := d.StartGuest(ctx, name, "qemu"); err != nil {
		t.Fatalf("StartGuest: %v", err)
	}
	want := filepath.Join(volume, "qemu", "run", name+".xml")
	if d.StatusFile(name) != want {
		t.Errorf("StatusFile() = %s, want %s", d.StatusFile(name), want)
	}
	checkStatusFile(t, d, name, "qemu")
	if _, err := os.Stat(filepath.Join(volume, LibvirtdSocketName)); err != nil {
		t.Errorf("socket not in the volume: %v", err)
	}

	if err := d.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if _, err := os.Stat(volume); err != nil {
		t.Errorf("Stop removed the caller's LibvirtRuntimeDir: %v", err)
	}
	// Stop destroys guests through libvirt, which removes their status files.
	if _, err := os.Stat(want); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("status file after Stop: err = %v, want not exist", err)
	}
}

// TestLibvirtdCleanupAfterOwnerDies kills a process that started a daemon and
// a guest without letting it call Stop, and expects the watchdog to clean up.
func TestLibvirtdCleanupAfterOwnerDies(t *testing.T) {
	if os.Getenv("TESTENV_OWNER_CHILD") == "1" {
		ownerChild()
		return
	}
	RequireDaemons(t, "libvirtd and a QEMU guest")
	if _, err := LookupLibvirtd(); err != nil {
		Unavailable(t, "%v", err)
	}
	line := killedOwnerReport(t, "TestLibvirtdCleanupAfterOwnerDies", "TESTENV_OWNER_CHILD=1")
	var home, dir string
	var daemon, guest int
	if _, err := fmt.Sscan(line, &home, &dir, &daemon, &guest); err != nil {
		t.Fatalf("child reported %q: %v", line, err)
	}

	deadline := time.Now().Add(15 * time.Second)
	for {
		left, _ := pidsWithEnv("HOME=" + home)
		_, dirErr := os.Stat(dir)
		if len(left) == 0 && !alive(daemon) && !alive(guest) && errors.Is(dirErr, os.ErrNotExist) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the owner died: processes %v, libvirtd alive %v, guest alive %v, Dir stat err %v",
				left, alive(daemon), alive(guest), dirErr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ownerChild starts a daemon and a guest, reports them on stdout and waits to
// be killed.
func ownerChild() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d, err := StartLibvirtd(ctx, LibvirtdOptions{CapsCacheDir: DefaultCapsCacheDir()})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := d.StartGuest(ctx, "default_orphan", "qemu"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	pid, _ := d.GuestPID("default_orphan")
	fmt.Println(d.homeDir, d.Dir(), d.PID(), pid)
	time.Sleep(time.Hour) // until the parent kills us
}

func TestLibvirtdRejectsLongDir(t *testing.T) {
	if _, err := LookupLibvirtd(); err != nil {
		Unavailable(t, "%v", err)
	}
	_, err := StartLibvirtd(context.Background(), LibvirtdOptions{Dir: "/tmp/" + strings.Repeat("x", 40)})
	if err == nil || !strings.Contains(err.Error(), "unix socket") {
		t.Fatalf("StartLibvirtd with long Dir: err = %v, want a socket path length error", err)
	}
}

// checkLiveDomain reads the live XML over the session URI, as the receiver
// does, and checks the domain type.
func checkLiveDomain(t *testing.T, d *Libvirtd, name, typ string) {
	t.Helper()
	conn, err := libvirt.NewConnect(d.URI())
	if err != nil {
		t.Fatalf("NewConnect(%s): %v", d.URI(), err)
	}
	defer conn.Close()
	dom, err := conn.LookupDomainByName(name)
	if err != nil {
		t.Fatalf("LookupDomainByName(%s): %v", name, err)
	}
	defer dom.Free()
	raw, err := dom.GetXMLDesc(0)
	if err != nil {
		t.Fatalf("GetXMLDesc: %v", err)
	}
	var live libvirtxml.Domain
	if err := live.Unmarshal(raw); err != nil {
		t.Fatalf("parsing live XML: %v", err)
	}
	if live.Type != typ || live.Name != name || live.ID == nil {
		t.Errorf("live domain: type=%q name=%q id=%v, want type=%q name=%q and an id", live.Type, live.Name, live.ID, typ, name)
	}
	if state, _, err := dom.GetState(); err != nil || state != libvirt.DOMAIN_RUNNING {
		t.Errorf("domain %s state = %v (err %v), want running", name, state, err)
	}
}

// domStatus is the root of libvirt's status file.
type domStatus struct {
	XMLName xml.Name          `xml:"domstatus"`
	State   string            `xml:"state,attr"`
	PID     int               `xml:"pid,attr"`
	Domain  libvirtxml.Domain `xml:"domain"`
}

// checkStatusFile checks <LibvirtRuntimeDir>/qemu/run/<name>.xml, which a
// receiver can read without talking to libvirtd.
func checkStatusFile(t *testing.T, d *Libvirtd, name, typ string) {
	t.Helper()
	raw, err := os.ReadFile(d.StatusFile(name))
	if err != nil {
		t.Fatalf("status file: %v", err)
	}
	if !strings.Contains(string(raw), "<domstatus") {
		t.Fatalf("%s has no <domstatus>:\n%s", d.StatusFile(name), raw)
	}
	var st domStatus
	if err := xml.Unmarshal(raw, &st); err != nil {
		t.Fatalf("parsing %s: %v", d.StatusFile(name), err)
	}
	pid, err := d.GuestPID(name)
	if err != nil {
		t.Fatalf("GuestPID: %v", err)
	}
	if st.State != "running" || st.PID != pid || st.Domain.Type != typ || st.Domain.Name != name {
		t.Errorf("status file: state=%q pid=%d type=%q name=%q, want running, %d, %q, %q",
			st.State, st.PID, st.Domain.Type, st.Domain.Name, pid, typ, name)
	}
}

func guestPIDs(t *testing.T, d *Libvirtd, guests map[string]string) map[string]int {
	t.Helper()
	pids := map[string]int{}
	for name := range guests {
		pid, err := d.GuestPID(name)
		if err != nil {
			t.Fatalf("GuestPID(%s): %v", name, err)
		}
		pids[name] = pid
	}
	return pids
}

// checkReattached asserts that the same QEMU processes still run and the new
// daemon reports them as running.
func checkReattached(t *testing.T, d *Libvirtd, guests map[string]string, pids map[string]int) {
	t.Helper()
	for name, typ := range guests {
		if !alive(pids[name]) {
			t.Errorf("guest %s (pid %d) did not survive the daemon restart", name, pids[name])
		}
		checkLiveDomain(t, d, name, typ)
		checkStatusFile(t, d, name, typ)
	}
}

func readPIDFile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// alive reports whether pid runs; zombies count as dead.
func alive(pid int) bool { return processRunning(pid) }

// cpusAllowed returns Cpus_allowed_list from /proc/<pid>/status.
func cpusAllowed(t *testing.T, pid string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/proc", pid, "status"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Cpus_allowed_list:"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no Cpus_allowed_list for %s", pid)
	return ""
}

// waitGone polls until pid has exited or the deadline passes.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Errorf("pid %d still alive", pid)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// killedOwnerReport re-runs this test binary as a child that runs only the test name
// with env set (the child's side of the test), reads the one line the child prints
// about what it started, and kills the child without letting it clean up.
func killedOwnerReport(t *testing.T, name, env string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+name+"$")
	cmd.Env = append(os.Environ(), env)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if err != nil {
		t.Fatalf("reading child's report: %v", err)
	}
	return line
}
