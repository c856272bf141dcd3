package testenv

// A Libvirtd's lifecycle: StartLibvirtd and MustStartLibvirtd, StartDaemon and
// its readiness checks, KillDaemon, Restart and Stop, and errors that carry the
// tail of libvirtd.log. What the daemon needs around it is in layout.go (its
// directories), caps.go and cpu.go (fast starts), procscan.go (its leftovers),
// guests.go and kvm.go; doc.go says how it runs.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"libvirt.org/go/libvirt"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv/tied"
)

// DefaultUser is the account libvirtd runs as when the caller is root and
// [LibvirtdOptions.User] is empty. It exists on every Debian system, so a fresh
// machine needs no extra setup.
const DefaultUser = "nobody"

// ErrLibvirtdNotFound is returned (wrapped) when no libvirtd binary exists.
// Tests use it to skip.
var ErrLibvirtdNotFound = errors.New("libvirtd binary not found")

const (
	// daemonStopTimeout bounds how long Stop and KillDaemon wait for processes to
	// go away before they escalate or give up.
	daemonStopTimeout = 10 * time.Second
	// readyPollInterval is how often readiness and process-exit checks poll.
	readyPollInterval = 20 * time.Millisecond
)

// LibvirtdOptions configures [StartLibvirtd]. The zero value is valid.
type LibvirtdOptions struct {
	// Dir is the daemon's private directory: config (cfg/), cache (cache/),
	// home (home/), libvirtd.conf and libvirtd.log. It must be at most 36
	// bytes long because QEMU monitor sockets live below it. Default: a new
	// /tmp/lvNNNNNNNNN, removed again by Stop.
	Dir string
	// RuntimeDir becomes libvirtd's XDG_RUNTIME_DIR. libvirt keeps its
	// runtime state in <RuntimeDir>/libvirt: sockets, pid files and the
	// status files <RuntimeDir>/libvirt/qemu/run/<name>.xml. It is created if
	// missing and chowned to the daemon's user. Default: <Dir>/run (and so
	// removed with Dir); a caller-supplied one is left in place by Stop.
	//
	// virtlogd's sockets always live in <RuntimeDir>/libvirt, so
	// len(RuntimeDir) must stay below ~78 bytes; use LibvirtRuntimeDir to put
	// the state into a long path.
	RuntimeDir string
	// LibvirtRuntimeDir, if set, is the directory that appears as
	// <RuntimeDir>/libvirt (a symlink to it is created). This mirrors
	// virt-launcher, which runs with XDG_RUNTIME_DIR=/var/run and mounts the
	// pod's "libvirt-runtime" emptyDir at /var/run/libvirt, so on the node the
	// status file is <pods>/<uid>/volumes/kubernetes.io~empty-dir/
	// libvirt-runtime/qemu/run/<name>.xml. Going through the symlink keeps
	// socket paths short however long this path is. It is created if missing,
	// chowned to the daemon's user and never removed by Stop.
	LibvirtRuntimeDir string
	// SocketDir is libvirtd's unix_sock_dir. Default: <RuntimeDir>/libvirt,
	// which is also where session-mode libvirt puts the socket by itself (and
	// where virt-launcher's socket ends up).
	SocketDir string
	// User is the unprivileged account libvirtd runs as; running as an
	// unprivileged user is what makes libvirtd use session mode. When the
	// caller is root the default is [DefaultUser]; otherwise the daemon runs
	// as the caller and User must be empty or name the caller.
	User string
	// Binary is the libvirtd executable. Default: libvirtd from PATH, else
	// /usr/sbin/libvirtd.
	Binary string
	// CapsCacheDir, if set, is a directory shared between daemons that holds
	// libvirt's QEMU capability cache. It is copied into the private cache
	// before the daemon starts and new entries are copied back once it is
	// ready. This skips the ~4 s per emulator probe of a cold daemon. libvirt
	// validates every entry itself (QEMU and libvirt binaries, kernel, KVM
	// access), so a stale cache only costs a re-probe. See
	// [DefaultCapsCacheDir].
	CapsCacheDir string
}

// Libvirtd is a running (or stopped) libvirtd session daemon. Its methods are
// safe for concurrent use.
type Libvirtd struct {
	binary       string
	dir          string
	ownDir       bool // dir was created by StartLibvirtd, so Stop removes it
	runtimeDir   string
	libvirtRun   string // <RuntimeDir>/libvirt, or LibvirtRuntimeDir if set
	socketDir    string
	homeDir      string
	configDir    string
	cacheDir     string
	confPath     string
	logPath      string
	capsCacheDir string
	userName     string
	cred         *syscall.Credential // nil: run as the calling user
	kvmACLErr    error               // why granting /dev/kvm to the user failed

	reaper     *exec.Cmd
	reaperPipe *os.File // our end; when it closes the reaper kills everything

	mu      sync.Mutex
	daemon  *daemonProc // nil while libvirtd is not running
	stopped bool
}

// daemonProc is one libvirtd process.
type daemonProc struct {
	pid  int
	done chan struct{} // closed when the process has been reaped
	err  error         // Wait's result, valid after done is closed
}

func (p *daemonProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// LookupLibvirtd returns the path of the libvirtd binary, or an error wrapping
// [ErrLibvirtdNotFound].
func LookupLibvirtd() (string, error) {
	if p, err := exec.LookPath("libvirtd"); err == nil {
		return p, nil
	}
	// Non-root PATHs usually lack /usr/sbin.
	const fallback = "/usr/sbin/libvirtd"
	if st, err := os.Stat(fallback); err == nil && !st.IsDir() {
		return fallback, nil
	}
	return "", fmt.Errorf("%w (not in PATH nor at /usr/sbin/libvirtd; install libvirt-daemon)", ErrLibvirtdNotFound)
}

// StartLibvirtd prepares the directories, starts libvirtd and waits until it
// answers API calls on its socket, or ctx ends. On error nothing is left
// running.
func StartLibvirtd(ctx context.Context, opts LibvirtdOptions) (_ *Libvirtd, err error) {
	d := &Libvirtd{binary: opts.Binary, capsCacheDir: opts.CapsCacheDir}
	if d.binary == "" {
		if d.binary, err = LookupLibvirtd(); err != nil {
			return nil, err
		}
	}
	uid, gid, err := d.resolveUser(opts.User)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			// Tear down whatever got set up; the original error matters more.
			_ = d.Stop()
		}
	}()
	if err := d.prepareDirs(opts, uid, gid); err != nil {
		return nil, err
	}
	if err := d.seedCapsCache(uid, gid); err != nil {
		return nil, err
	}
	if d.cred != nil {
		// libvirt decides once, while probing QEMU, whether KVM is usable
		// for its user, so the ACL must be in place before the daemon starts.
		if ok, _ := KVMUsable(); ok {
			d.kvmACLErr = grantKVM(d.userName)
		}
	}
	if err := d.startReaper(); err != nil {
		return nil, err
	}
	if err := d.StartDaemon(ctx); err != nil {
		return nil, err
	}
	return d, nil
}

// resolveUser fills d.userName and d.cred and returns the daemon's uid/gid.
func (d *Libvirtd) resolveUser(name string) (uid, gid int, err error) {
	if os.Geteuid() != 0 {
		self, err := user.Current()
		if err != nil {
			return 0, 0, fmt.Errorf("looking up current user: %w", err)
		}
		if name != "" && name != self.Username {
			return 0, 0, fmt.Errorf("running libvirtd as %q requires root (running as %q)", name, self.Username)
		}
		d.userName = self.Username
		return os.Geteuid(), os.Getegid(), nil
	}
	if name == "" {
		name = DefaultUser
	}
	u, err := user.Lookup(name)
	if err != nil {
		return 0, 0, fmt.Errorf("looking up daemon user: %w", err)
	}
	uid, err = strconv.Atoi(u.Uid)
	if err != nil {
		return 0, 0, fmt.Errorf("user %s: bad uid %q", name, u.Uid)
	}
	gid, err = strconv.Atoi(u.Gid)
	if err != nil {
		return 0, 0, fmt.Errorf("user %s: bad gid %q", name, u.Gid)
	}
	if uid == 0 {
		// A root libvirtd runs in system mode, which is not what KubeVirt does.
		return 0, 0, fmt.Errorf("daemon user %s is root; libvirtd must run unprivileged to use session mode", name)
	}
	cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
	if ids, err := u.GroupIds(); err == nil {
		// Keep the user's supplementary groups (e.g. kvm) like a login would.
		for _, id := range ids {
			if g, err := strconv.Atoi(id); err == nil && g != gid {
				cred.Groups = append(cred.Groups, uint32(g))
			}
		}
	}
	d.userName, d.cred = name, cred
	return uid, gid, nil
}

// logNote appends a harness message to libvirtd.log so it shows up in the
// same place as the daemon's own messages.
func (d *Libvirtd) logNote(format string, args ...any) {
	f, err := os.OpenFile(d.logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%s testenv: %s\n", time.Now().UTC().Format(time.RFC3339Nano), fmt.Sprintf(format, args...))
}

// StartDaemon starts libvirtd with the existing directories and waits until it
// answers and has re-attached to the guests that kept running, or ctx ends.
// Use it after [Libvirtd.KillDaemon]. If the daemon does not come up it is
// killed again; if it comes up but lost guests, it keeps running and the
// error names them.
func (d *Libvirtd) StartDaemon(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped {
		return errors.New("libvirtd harness already stopped")
	}
	if d.daemon != nil && !d.daemon.exited() {
		return fmt.Errorf("libvirtd already running (pid %d)", d.daemon.pid)
	}
	d.daemon = nil

	logf, err := os.OpenFile(d.logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "%s testenv: starting %s --config %s\n", time.Now().UTC().Format(time.RFC3339Nano), d.binary, d.confPath)

	cmd := exec.Command(d.binary, "--config", d.confPath)
	cmd.Dir = d.homeDir
	cmd.Env = []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + d.homeDir,
		"USER=" + d.userName,
		"XDG_RUNTIME_DIR=" + d.runtimeDir,
		"XDG_CONFIG_HOME=" + d.configDir,
		"XDG_CACHE_HOME=" + d.cacheDir,
	}
	cmd.Stdout, cmd.Stderr = logf, logf // *os.File: handed over directly, no copy goroutine
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: d.cred,
		Setpgid:    true, // KillDaemon signals the group: libvirtd and non-daemonized helpers
	}

	p := &daemonProc{done: make(chan struct{})}
	// The pinning is confined to the thread that forks libvirtd, which tied keeps
	// for libvirtd alone.
	pin := func() {
		if err := pinToFirstCPU(); err != nil {
			d.logNote("pinning libvirtd to one CPU failed, QEMU capabilities may be re-probed: %v", err)
		}
	}
	err = tied.StartOnThread(cmd, pin, func(err error) {
		p.err = err
		close(p.done)
	})
	if err == nil {
		p.pid = cmd.Process.Pid
	}
	logf.Close() // the child holds its own copy
	if err != nil {
		return fmt.Errorf("starting libvirtd: %w", err)
	}
	d.daemon = p

	if err := d.waitReady(ctx, p); err != nil {
		_ = d.killDaemonLocked(syscall.SIGKILL)
		return err
	}
	d.saveCapsCache()
	return d.waitGuestsAttached(ctx)
}

// waitReady polls until libvirtd answers a QEMU-driver call. The first call
// on a fresh daemon blocks while libvirt probes QEMU capabilities.
func (d *Libvirtd) waitReady(ctx context.Context, p *daemonProc) error {
	sock := d.SocketPath()
	// Dial first (cheap and cancellable) so the libvirt client never sees a
	// missing or stale socket.
	for {
		c, err := net.Dial("unix", sock)
		if err == nil {
			c.Close()
			break
		}
		select {
		case <-p.done:
			return d.errorf("libvirtd exited before listening (%v)", p.err)
		case <-ctx.Done():
			return d.errorf("waiting for %s: %v (last dial error: %v)", sock, ctx.Err(), err)
		case <-time.After(readyPollInterval):
		}
	}
	err := callUntil(ctx, p.done, func() error {
		conn, err := libvirt.NewConnect(d.URI())
		if err != nil {
			return err
		}
		defer conn.Close()
		_, err = conn.GetVersion() // needs the QEMU driver, i.e. waits for probing
		return err
	})
	if err != nil {
		if p.exited() {
			err = fmt.Errorf("%w (%v)", err, p.err)
		}
		return d.errorf("libvirtd not answering on %s: %v", d.URI(), err)
	}
	return nil
}

// waitGuestsAttached returns once libvirtd has re-attached to every guest
// that outlived the previous daemon. libvirtd answers API calls before its
// per-guest reconnect threads are done, and a guest destroyed during that
// window races with them (Destroy then fails with "domain is not running").
// Reconnecting holds the domain's job, so any call that takes the job (here
// MemoryStats) waits for it to finish.
func (d *Libvirtd) waitGuestsAttached(ctx context.Context) error {
	err := callUntil(ctx, nil, func() error {
		conn, err := libvirt.NewConnect(d.URI())
		if err != nil {
			return err
		}
		defer conn.Close()
		doms, err := conn.ListAllDomains(libvirt.CONNECT_LIST_DOMAINS_ACTIVE)
		if err != nil {
			return fmt.Errorf("listing guests: %w", err)
		}
		var lost []string
		for _, dom := range doms {
			if _, err := dom.MemoryStats(uint32(libvirt.DOMAIN_MEMORY_STAT_NR), 0); err != nil {
				if active, aerr := dom.IsActive(); aerr == nil && !active {
					name, _ := dom.GetName()
					lost = append(lost, name)
				}
			}
			dom.Free()
		}
		if len(lost) > 0 {
			return fmt.Errorf("libvirtd lost guests %v while re-attaching to them", lost)
		}
		return nil
	})
	if err != nil {
		return d.errorf("waiting for libvirtd to re-attach guests: %v", err)
	}
	return nil
}

// callUntil runs fn, which may block in libvirt calls that cannot be
// interrupted, and returns its error, or gives up when ctx ends or done
// closes. fn then finishes on its own in the background (it fails quickly
// once the daemon is gone).
func callUntil(ctx context.Context, done <-chan struct{}, fn func() error) error {
	res := make(chan error, 1)
	go func() { res <- fn() }()
	select {
	case err := <-res:
		return err
	case <-done:
		return errors.New("libvirtd exited")
	case <-ctx.Done():
		return ctx.Err()
	}
}

// KillDaemon sends sig to libvirtd (only the daemon: QEMU guests and virtlogd
// keep running) and waits until it has exited, escalating to SIGKILL after
// 10 s. Use SIGTERM for an orderly shutdown and SIGKILL to simulate a crash;
// libvirtd re-attaches to the guests after either when [Libvirtd.StartDaemon]
// runs. Killing a daemon that is not running is not an error.
func (d *Libvirtd) KillDaemon(sig syscall.Signal) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.killDaemonLocked(sig)
}

func (d *Libvirtd) killDaemonLocked(sig syscall.Signal) error {
	p := d.daemon
	if p == nil {
		return nil
	}
	d.daemon = nil
	if p.exited() {
		return nil
	}
	// Negative pid: the whole process group (Setpgid made it pid's own).
	if err := syscall.Kill(-p.pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signalling libvirtd: %w", err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(daemonStopTimeout):
	}
	_ = syscall.Kill(-p.pid, syscall.SIGKILL)
	select {
	case <-p.done:
		return fmt.Errorf("libvirtd ignored %v for %v and was killed", sig, daemonStopTimeout)
	case <-time.After(daemonStopTimeout):
		return fmt.Errorf("libvirtd (pid %d) did not exit even after SIGKILL", p.pid)
	}
}

// Restart stops libvirtd with SIGTERM and starts it again with the same
// directories. Running guests survive and are re-attached.
func (d *Libvirtd) Restart(ctx context.Context) error {
	if err := d.KillDaemon(syscall.SIGTERM); err != nil {
		return err
	}
	return d.StartDaemon(ctx)
}

// Stop kills libvirtd, every QEMU guest and virtlogd it started, and removes
// Dir if StartLibvirtd created it. When the status files outlive Stop (a
// caller-supplied Dir, RuntimeDir or LibvirtRuntimeDir, which are never
// removed) and the daemon runs, libvirtd first sees its guests die so that it
// removes their status files. Stop is idempotent.
func (d *Libvirtd) Stop() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped {
		return nil
	}
	d.stopped = true
	var errs []error
	// Status files only matter if the directory holding them survives Stop.
	removed := d.ownDir && strings.HasPrefix(d.libvirtRun, d.dir+string(filepath.Separator))
	if !removed && d.daemon != nil && !d.daemon.exited() {
		d.destroyAllGuests()
	}
	// SIGTERM so libvirtd removes its sockets; anything left is killed below.
	if err := d.killDaemonLocked(syscall.SIGTERM); err != nil {
		errs = append(errs, err)
	}
	if d.homeDir != "" {
		if err := killByEnv("HOME="+d.homeDir, daemonStopTimeout); err != nil {
			errs = append(errs, err)
		}
	}
	if d.reaper != nil {
		// Everything is dead already; spare the reaper its /proc scan.
		_ = d.reaper.Process.Kill()
		_ = d.reaper.Wait()
		d.reaperPipe.Close()
	}
	if d.ownDir && d.dir != "" {
		if err := os.RemoveAll(d.dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// User is the account libvirtd runs as.
func (d *Libvirtd) User() string { return d.userName }

// PID is the process id of the running libvirtd, or 0 if it is not running.
func (d *Libvirtd) PID() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.daemon == nil || d.daemon.exited() {
		return 0
	}
	return d.daemon.pid
}

// Connect opens a new libvirt connection to the daemon. The caller closes it.
func (d *Libvirtd) Connect() (*libvirt.Connect, error) {
	conn, err := libvirt.NewConnect(d.URI())
	if err != nil {
		return nil, d.errorf("connecting to %s: %v", d.URI(), err)
	}
	return conn, nil
}

// MustStartLibvirtd starts a daemon for a test and stops it in tb.Cleanup. It
// skips the test when libvirtd is not installed and fails it on any other
// error. An empty opts.CapsCacheDir defaults to [DefaultCapsCacheDir] so that
// only the first test run on a machine pays for QEMU probing.
func MustStartLibvirtd(tb TB, opts LibvirtdOptions) *Libvirtd {
	tb.Helper()
	RequireDaemons(tb, "libvirtd")
	if opts.CapsCacheDir == "" {
		opts.CapsCacheDir = DefaultCapsCacheDir()
	}
	// Generous: a cold capability probe takes ~8 s here, slower CI may need more.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d, err := StartLibvirtd(ctx, opts)
	if errors.Is(err, ErrLibvirtdNotFound) {
		Unavailable(tb, "%v", err)
	}
	if err != nil {
		tb.Fatalf("starting libvirtd: %v", err)
	}
	tb.Cleanup(func() {
		if err := d.Stop(); err != nil {
			tb.Errorf("stopping libvirtd: %v", err)
		}
	})
	return d
}

// errorf formats an error and appends the tail of libvirtd.log, which usually
// says what actually went wrong.
func (d *Libvirtd) errorf(format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if tail := tailFile(d.logPath, 20); tail != "" {
		msg += "\nlibvirtd log " + d.logPath + " (tail):\n" + tail
	}
	return errors.New(msg)
}

// tailFile returns the last n lines of path, or "" if it cannot be read.
func tailFile(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	const maxRead = 64 << 10
	if st, err := f.Stat(); err == nil && st.Size() > maxRead {
		_, _ = f.Seek(-maxRead, io.SeekEnd)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
