package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"libvirt.org/go/libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/watchdog"
)

// DefaultUser is the account libvirtd runs as when the caller is root and
// [LibvirtdOptions.User] is empty. It exists on every Debian system, so a fresh
// machine needs no extra setup.
const DefaultUser = "nobody"

// SocketName is the file name of libvirtd's API socket in session mode.
const SocketName = "libvirt-sock"

// ErrLibvirtdNotFound is returned (wrapped) when no libvirtd binary exists.
// Tests use it to skip.
var ErrLibvirtdNotFound = errors.New("libvirtd binary not found")

const (
	// maxSocketPath is the longest path a unix socket may have (sun_path is
	// 108 bytes including the terminating NUL).
	maxSocketPath = 107
	// maxDirLen bounds LibvirtdOptions.Dir so that the monitor socket
	// <Dir>/cfg/libvirt/qemu/lib/domain-<id>-<name>/monitor.sock fits:
	// libvirt shortens <name> to 20 bytes, which leaves ~39 bytes for Dir.
	maxDirLen = 36
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

// DefaultCapsCacheDir returns a per-user directory suitable for
// [LibvirtdOptions.CapsCacheDir], or "" when the user has no cache directory.
func DefaultCapsCacheDir() string {
	base, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(base, "otelcol-kubevirt-testenv", "qemu-capabilities")
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

// prepareDirs creates the directory layout and libvirtd.conf.
func (d *Libvirtd) prepareDirs(opts LibvirtdOptions, uid, gid int) error {
	if opts.Dir == "" {
		// Not os.TempDir: TMPDIR may be long, and socket paths must be short.
		dir, err := os.MkdirTemp("/tmp", "lv")
		if err != nil {
			return err
		}
		d.dir, d.ownDir = dir, true
	} else {
		dir, err := filepath.Abs(opts.Dir)
		if err != nil {
			return err
		}
		d.dir = dir
	}
	if len(d.dir) > maxDirLen {
		return fmt.Errorf("Dir %s is %d bytes, at most %d fit: QEMU monitor sockets live below it and unix socket paths are limited to %d bytes",
			d.dir, len(d.dir), maxDirLen, maxSocketPath)
	}
	d.runtimeDir = opts.RuntimeDir
	if d.runtimeDir == "" {
		d.runtimeDir = filepath.Join(d.dir, "run")
	}
	d.socketDir = opts.SocketDir
	if d.socketDir == "" {
		d.socketDir = filepath.Join(d.runtimeDir, "libvirt")
	}
	var err error
	if d.runtimeDir, err = filepath.Abs(d.runtimeDir); err != nil {
		return err
	}
	if d.socketDir, err = filepath.Abs(d.socketDir); err != nil {
		return err
	}
	d.libvirtRun = filepath.Join(d.runtimeDir, "libvirt")
	if opts.LibvirtRuntimeDir != "" {
		if d.libvirtRun, err = filepath.Abs(opts.LibvirtRuntimeDir); err != nil {
			return err
		}
	}
	d.homeDir = filepath.Join(d.dir, "home")
	d.configDir = filepath.Join(d.dir, "cfg")
	d.cacheDir = filepath.Join(d.dir, "cache")
	d.confPath = filepath.Join(d.dir, "libvirtd.conf")
	d.logPath = filepath.Join(d.dir, "libvirtd.log")

	// Fail early and clearly instead of with libvirt's bind() errors.
	for _, p := range []string{
		filepath.Join(d.socketDir, "libvirt-admin-sock"),
		filepath.Join(d.runtimeDir, "libvirt", "virtlogd-admin-sock"),
	} {
		if len(p) > maxSocketPath {
			return fmt.Errorf("socket path %s is %d bytes, unix sockets allow at most %d; use a shorter RuntimeDir/SocketDir or LibvirtRuntimeDir", p, len(p), maxSocketPath)
		}
	}
	for _, p := range []string{d.dir, d.runtimeDir, d.socketDir} {
		if strings.ContainsAny(p, "\"\\\n") {
			return fmt.Errorf("path %q contains characters libvirtd.conf cannot hold", p)
		}
	}

	if err := os.MkdirAll(d.dir, 0o755); err != nil {
		return err
	}
	// MkdirTemp creates 0700; the daemon user must be able to traverse it.
	if err := os.Chmod(d.dir, 0o755); err != nil {
		return err
	}
	mkdir := func(p string) error {
		if err := os.MkdirAll(p, 0o755); err != nil {
			return err
		}
		if err := os.Chown(p, uid, gid); err != nil {
			return err
		}
		return checkTraversable(p, uid)
	}
	for _, p := range []string{d.homeDir, d.configDir, d.cacheDir, d.runtimeDir, d.libvirtRun} {
		if err := mkdir(p); err != nil {
			return err
		}
	}
	if link := filepath.Join(d.runtimeDir, "libvirt"); link != d.libvirtRun {
		// An identical link may be left from an earlier daemon on this RuntimeDir.
		if target, err := os.Readlink(link); err != nil || target != d.libvirtRun {
			if err := os.Symlink(d.libvirtRun, link); err != nil {
				return fmt.Errorf("linking %s to LibvirtRuntimeDir: %w", link, err)
			}
		}
	}
	// After the symlink: the default SocketDir lies below it.
	if err := mkdir(d.socketDir); err != nil {
		return err
	}
	// Session mode defaults already disable TCP/TLS; only the socket location
	// and logging need saying. Level 3 = warnings and errors, to stderr,
	// which goes to libvirtd.log.
	conf := fmt.Sprintf("# written by internal/testenv\nunix_sock_dir = \"%s\"\nlog_outputs = \"3:stderr\"\n", d.socketDir)
	return os.WriteFile(d.confPath, []byte(conf), 0o644)
}

// checkTraversable reports an error when uid cannot reach dir because an
// ancestor lacks the search bit for it (e.g. a 0700 t.TempDir()). Group
// permissions are ignored for simplicity: only owner and "other" count.
func checkTraversable(dir string, uid int) error {
	if uid == 0 {
		return nil
	}
	for p := dir; ; p = filepath.Dir(p) {
		st, err := os.Stat(p)
		if err != nil {
			return err
		}
		sys, _ := st.Sys().(*syscall.Stat_t)
		mode := st.Mode().Perm()
		if !(sys != nil && int(sys.Uid) == uid && mode&0o100 != 0) && mode&0o001 == 0 {
			return fmt.Errorf("%s (mode %o) is not searchable by uid %d, so libvirtd cannot reach %s; chmod o+x it", p, mode, uid, dir)
		}
		if p == "/" || p == "." {
			return nil
		}
	}
}

// privateCapsDir is where session-mode libvirt keeps its QEMU capabilities.
func (d *Libvirtd) privateCapsDir() string {
	return filepath.Join(d.cacheDir, "libvirt", "qemu", "cache", "capabilities")
}

// seedCapsCache copies the shared capability cache into the private one.
func (d *Libvirtd) seedCapsCache(uid, gid int) error {
	if d.capsCacheDir == "" {
		return nil
	}
	entries, err := filepath.Glob(filepath.Join(d.capsCacheDir, "*.xml"))
	if err != nil || len(entries) == 0 {
		return nil // nothing cached yet
	}
	dst := d.privateCapsDir()
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	// MkdirAll created the levels below cache/ as root; libvirt writes there.
	for p := dst; p != d.cacheDir; p = filepath.Dir(p) {
		if err := os.Chown(p, uid, gid); err != nil {
			return err
		}
	}
	for _, src := range entries {
		data, err := os.ReadFile(src)
		if err != nil {
			continue // a concurrent writer may be replacing it; just re-probe
		}
		p := filepath.Join(dst, filepath.Base(src))
		if err := os.WriteFile(p, data, 0o600); err != nil {
			return err
		}
		if err := os.Chown(p, uid, gid); err != nil {
			return err
		}
	}
	return nil
}

// saveCapsCache copies new or changed capability files back to the shared
// cache. Each file is replaced atomically so concurrent daemons never read a
// torn file. Failures only cost a later re-probe, so they are just logged.
func (d *Libvirtd) saveCapsCache() {
	if d.capsCacheDir == "" {
		return
	}
	entries, _ := filepath.Glob(filepath.Join(d.privateCapsDir(), "*.xml"))
	for _, src := range entries {
		if err := func() error {
			data, err := os.ReadFile(src)
			if err != nil {
				return err
			}
			dst := filepath.Join(d.capsCacheDir, filepath.Base(src))
			if old, err := os.ReadFile(dst); err == nil && bytes.Equal(old, data) {
				return nil
			}
			if err := os.MkdirAll(d.capsCacheDir, 0o755); err != nil {
				return err
			}
			tmp, err := os.CreateTemp(d.capsCacheDir, ".tmp-*")
			if err != nil {
				return err
			}
			defer os.Remove(tmp.Name())
			if _, err := tmp.Write(data); err != nil {
				tmp.Close()
				return err
			}
			if err := tmp.Close(); err != nil {
				return err
			}
			return os.Rename(tmp.Name(), dst)
		}(); err != nil {
			d.logNote("saving QEMU capabilities cache: %v", err)
		}
	}
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

// reaperScript runs detached from the owner. It blocks until the owner's end
// of its stdin pipe closes, which happens when the owner dies in any way, even
// by SIGKILL (Stop cleans up by itself and kills the reaper), then kills every process whose environment contains HOME=$1 (the
// daemon, virtlogd and all QEMUs carry it) and removes $2 if set. The reaper
// itself runs without HOME so it never matches. The second and third passes
// catch anything libvirtd spawned while dying.
const reaperScript = `trap '' HUP INT TERM
read -r _ || :
for i in 1 2 3; do
	pids=$(grep -lsxzF -e "HOME=$1" /proc/[0-9]*/environ | sed -e 's#^/proc/##' -e 's#/environ$##')
	[ -n "$pids" ] || break
	kill -9 $pids 2>/dev/null
	sleep 0.2
done
[ -z "$2" ] || rm -rf -- "$2"
`

// startReaper starts the watchdog described at reaperScript.
func (d *Libvirtd) startReaper() error {
	rmDir := ""
	if d.ownDir {
		rmDir = d.dir
	}
	cmd, w, err := watchdog.Start("testenv-reaper", reaperScript, nil, d.homeDir, rmDir)
	if err != nil {
		return err
	}
	d.reaper, d.reaperPipe = cmd, w
	return nil
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
		Pdeathsig:  syscall.SIGKILL,
	}

	// Pdeathsig fires when the *thread* that forked exits, not the process.
	// Go may retire threads (e.g. after a LockOSThread goroutine returns), so
	// fork from a locked thread that lives exactly as long as the daemon.
	p := &daemonProc{done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// Deliberately never unlocked: the thread exits with this goroutine,
		// which happens only after the daemon has been reaped. That also
		// confines the CPU pinning below to this thread.
		if err := pinToFirstCPU(); err != nil {
			d.logNote("pinning libvirtd to one CPU failed, QEMU capabilities may be re-probed: %v", err)
		}
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		p.pid = cmd.Process.Pid
		started <- nil
		p.err = cmd.Wait()
		close(p.done)
	}()
	err = <-started
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

// pinToFirstCPU restricts the calling thread, and so every process it forks,
// to the lowest-numbered CPU it may run on.
//
// Why: libvirt stores the host's CPUID in its QEMU capability cache and
// throws the cache away when the CPUID it reads at startup differs. CPUID
// contents differ between CPUs (APIC IDs, and on some VMs more), so without
// pinning every daemon start re-probes QEMU (~8 s here) with a probability of
// (n-1)/n on n CPUs. libvirt resets each QEMU's affinity to all host CPUs,
// so guests are not pinned by this.
func pinToFirstCPU() error {
	var mask [16]uint64 // 1024 CPUs, glibc's cpu_set_t
	if _, _, e := syscall.RawSyscall(syscall.SYS_SCHED_GETAFFINITY, 0, unsafe.Sizeof(mask), uintptr(unsafe.Pointer(&mask))); e != 0 {
		return e
	}
	for i, w := range mask {
		if w == 0 {
			continue
		}
		var one [len(mask)]uint64
		one[i] = w & -w // lowest set bit
		if _, _, e := syscall.RawSyscall(syscall.SYS_SCHED_SETAFFINITY, 0, unsafe.Sizeof(one), uintptr(unsafe.Pointer(&one))); e != 0 {
			return e
		}
		return nil
	}
	return errors.New("empty CPU affinity mask")
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

// destroyAllGuests kills every running guest's QEMU and waits until libvirtd
// has noticed, which makes it remove their status files. It is best effort
// and bounded in time: whatever survives is killed by Stop anyway.
//
// libvirtd only lets go of a guest once its QEMU has been reaped. QEMU is a
// child of PID 1, and a PID 1 that reaps lazily (as on some CI VMs) makes
// this, like virDomainDestroy, take a second or two.
func (d *Libvirtd) destroyAllGuests() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = callUntil(ctx, d.daemon.done, func() error {
		conn, err := libvirt.NewConnect(d.URI())
		if err != nil {
			return err
		}
		defer conn.Close()
		for {
			doms, err := conn.ListAllDomains(libvirt.CONNECT_LIST_DOMAINS_ACTIVE)
			if err != nil || len(doms) == 0 {
				return err
			}
			for _, dom := range doms {
				if name, err := dom.GetName(); err == nil {
					if pid, err := d.GuestPID(name); err == nil {
						_ = syscall.Kill(pid, syscall.SIGKILL)
					}
				}
				dom.Free()
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			time.Sleep(readyPollInterval)
		}
	})
}

// killByEnv SIGKILLs all processes whose environment contains entry and waits
// until they are gone. A dying process loses its environment (and a zombie
// has none) before it has finished exiting, so each killed pid is also
// watched until it is a zombie or reaped: a QEMU tearing down a KVM VM can
// take a while.
func killByEnv(entry string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	killed := map[int]bool{}
	for {
		pids, err := pidsWithEnv(entry)
		if err != nil {
			return err
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			killed[pid] = true
		}
		var left []int
		for pid := range killed {
			if processRunning(pid) {
				left = append(left, pid)
			}
		}
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v with %s survived SIGKILL for %v", left, entry, timeout)
		}
		time.Sleep(readyPollInterval)
	}
}

// processRunning reports whether pid exists and is not a zombie. Daemonized
// QEMU and virtlogd are children of PID 1, which reaps them when it likes.
func processRunning(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	// "pid (comm) state ...": comm may contain spaces and parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// pidsWithEnv lists processes whose /proc/<pid>/environ contains entry.
// Processes we may not read are skipped.
func pidsWithEnv(entry string) ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	want := []byte(entry)
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil {
			continue
		}
		for _, kv := range bytes.Split(env, []byte{0}) {
			if bytes.Equal(kv, want) {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids, nil
}

// URI is the libvirt connection URI of the daemon,
// qemu+unix:///session?socket=<SocketDir>/libvirt-sock.
func (d *Libvirtd) URI() string {
	return "qemu+unix:///session?socket=" + d.SocketPath()
}

// SocketPath is the path of libvirtd's API socket.
func (d *Libvirtd) SocketPath() string { return filepath.Join(d.socketDir, SocketName) }

// Dir is the daemon's private directory (see [LibvirtdOptions.Dir]).
func (d *Libvirtd) Dir() string { return d.dir }

// RuntimeDir is the daemon's XDG_RUNTIME_DIR.
func (d *Libvirtd) RuntimeDir() string { return d.runtimeDir }

// LogPath is the file that receives libvirtd's stderr.
func (d *Libvirtd) LogPath() string { return d.logPath }

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

// LibvirtRuntimeDir is <RuntimeDir>/libvirt, or [LibvirtdOptions.LibvirtRuntimeDir]
// if that was set: the directory holding libvirt's runtime state.
func (d *Libvirtd) LibvirtRuntimeDir() string { return d.libvirtRun }

// StatusFile is where libvirt keeps the live status of a running domain:
// <RuntimeDir>/libvirt/qemu/run/<name>.xml (spelled with LibvirtRuntimeDir
// if set), a <domstatus> element wrapping the live <domain>. libvirt writes
// it before the start call returns and removes it when the guest stops.
func (d *Libvirtd) StatusFile(name string) string {
	return filepath.Join(d.libvirtRun, "qemu", "run", name+".xml")
}

// GuestLogPath is the file that receives the guest QEMU's stdout/stderr.
func (d *Libvirtd) GuestLogPath(name string) string {
	return filepath.Join(d.cacheDir, "libvirt", "qemu", "log", name+".log")
}

// GuestPID returns the QEMU process id of a running guest, from libvirt's
// <RuntimeDir>/libvirt/qemu/run/<name>.pid.
func (d *Libvirtd) GuestPID(name string) (int, error) {
	b, err := os.ReadFile(filepath.Join(d.libvirtRun, "qemu", "run", name+".pid"))
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// Connect opens a new libvirt connection to the daemon. The caller closes it.
func (d *Libvirtd) Connect() (*libvirt.Connect, error) {
	conn, err := libvirt.NewConnect(d.URI())
	if err != nil {
		return nil, d.errorf("connecting to %s: %v", d.URI(), err)
	}
	return conn, nil
}

// DomainXML returns a minimal domain definition: 64 MiB, one vCPU, i440fx,
// no disk, no network, no display. Such a guest sits in SeaBIOS forever.
// domainType is libvirt's domain type, "kvm" or "qemu" (TCG). KubeVirt names
// domains <namespace>_<name>, e.g. "default_my-vm".
func DomainXML(name, domainType string) (string, error) {
	if name == "" || domainType == "" {
		return "", errors.New("domain name and type must not be empty")
	}
	dom := libvirtxml.Domain{
		Type:   domainType,
		Name:   name,
		Memory: &libvirtxml.DomainMemory{Value: 64, Unit: "MiB"},
		VCPU:   &libvirtxml.DomainVCPU{Value: 1},
		OS: &libvirtxml.DomainOS{
			Type: &libvirtxml.DomainOSType{Arch: "x86_64", Machine: "pc", Type: "hvm"},
		},
		Devices: &libvirtxml.DomainDeviceList{},
	}
	return dom.Marshal()
}

// StartGuest defines and starts a minimal guest (see [DomainXML]) named name
// with domain type domainType ("kvm" or "qemu").
func (d *Libvirtd) StartGuest(ctx context.Context, name, domainType string) error {
	x, err := DomainXML(name, domainType)
	if err != nil {
		return err
	}
	return d.StartGuestXML(ctx, x)
}

// StartGuestXML defines a persistent domain from domainXML and starts it, as
// virt-launcher does. When it returns nil, QEMU runs and the status file
// exists. libvirt calls cannot be interrupted, so ctx is only checked before
// they begin.
func (d *Libvirtd) StartGuestXML(ctx context.Context, domainXML string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	conn, err := d.Connect()
	if err != nil {
		return err
	}
	defer conn.Close()
	dom, err := conn.DomainDefineXML(domainXML)
	if err != nil {
		return d.errorf("defining domain: %v", err)
	}
	defer dom.Free()
	name, _ := dom.GetName()
	if err := dom.Create(); err != nil {
		_ = dom.Undefine()
		msg := fmt.Sprintf("starting domain %s: %v", name, err)
		if strings.Contains(err.Error(), "kvm") && d.kvmACLErr != nil {
			msg += fmt.Sprintf(" (granting /dev/kvm to %s failed: %v)", d.userName, d.kvmACLErr)
		}
		if tail := tailFile(d.GuestLogPath(name), 10); tail != "" {
			msg += "\nguest log " + d.GuestLogPath(name) + ":\n" + tail
		}
		return d.errorf("%s", msg)
	}
	return nil
}

// DestroyGuest stops a guest (like pulling the plug) and removes its
// definition. A guest that is defined but not running is just undefined.
func (d *Libvirtd) DestroyGuest(name string) error {
	conn, err := d.Connect()
	if err != nil {
		return err
	}
	defer conn.Close()
	dom, err := conn.LookupDomainByName(name)
	if err != nil {
		return d.errorf("looking up domain %s: %v", name, err)
	}
	defer dom.Free()
	if active, err := dom.IsActive(); err == nil && active {
		if err := dom.Destroy(); err != nil {
			// libvirt reports "not running" when the guest went away by
			// other means meanwhile; gone is what was asked for.
			if active, aerr := dom.IsActive(); aerr != nil || active {
				return d.errorf("destroying domain %s: %v", name, err)
			}
		}
	}
	if err := dom.Undefine(); err != nil {
		return d.errorf("undefining domain %s: %v", name, err)
	}
	return nil
}

// KVMUsable reports whether this daemon can run "kvm" guests, with the
// reason when not: the host must pass [KVMUsable], the /dev/kvm ACL for the
// daemon user must have been granted, and libvirt must offer the kvm domain
// type.
func (d *Libvirtd) KVMUsable() (bool, string) {
	if ok, why := KVMUsable(); !ok {
		return false, why
	}
	if d.kvmACLErr != nil {
		return false, fmt.Sprintf("granting /dev/kvm to %s: %v", d.userName, d.kvmACLErr)
	}
	conn, err := d.Connect()
	if err != nil {
		return false, err.Error()
	}
	defer conn.Close()
	if _, err := conn.GetDomainCapabilities("", "x86_64", "", "kvm", 0); err != nil {
		return false, fmt.Sprintf("libvirt offers no kvm domains to user %s: %v", d.userName, err)
	}
	return true, ""
}

// KVM ioctls from <linux/kvm.h>.
const (
	kvmGetAPIVersion = 0xAE00
	kvmCreateVM      = 0xAE01
	kvmAPIVersion    = 12
)

// KVMUsable reports whether /dev/kvm exists and works for the calling process
// (it opens it and creates and discards a VM), with the reason when not. The
// harness additionally grants the daemon user access (see
// [Libvirtd.KVMUsable]).
func KVMUsable() (bool, string) {
	const dev = "/dev/kvm"
	st, err := os.Stat(dev)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return false, dev + " does not exist (no KVM on this host; enable (nested) virtualisation or load kvm_intel/kvm_amd)"
		}
		return false, err.Error()
	}
	if st.Mode()&os.ModeCharDevice == 0 {
		return false, dev + " is not a character device"
	}
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return false, fmt.Sprintf("cannot open %s: %v", dev, err)
	}
	defer f.Close()
	v, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), kvmGetAPIVersion, 0)
	if errno != 0 {
		return false, fmt.Sprintf("KVM_GET_API_VERSION: %v", errno)
	}
	if v != kvmAPIVersion {
		return false, fmt.Sprintf("KVM API version %d, want %d", v, kvmAPIVersion)
	}
	vm, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), kvmCreateVM, 0)
	if errno != 0 {
		return false, fmt.Sprintf("KVM_CREATE_VM: %v", errno)
	}
	syscall.Close(int(vm))
	return true, ""
}

// grantKVM gives userName read/write access to /dev/kvm with a POSIX ACL,
// which leaves the device's owner, group and mode alone. The entry is not
// removed again: other daemons may rely on it and it is harmless on a test
// host.
func grantKVM(userName string) error {
	setfacl, err := exec.LookPath("setfacl")
	if err != nil {
		return fmt.Errorf("setfacl not found (install the acl package): %w", err)
	}
	out, err := exec.Command(setfacl, "-m", "u:"+userName+":rw", "/dev/kvm").CombinedOutput()
	if err != nil {
		return fmt.Errorf("setfacl: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// TB is the subset of testing.TB that [MustStartLibvirtd] needs. It is
// declared here so that non-test programs using this package do not link
// package testing.
type TB interface {
	Helper()
	Cleanup(func())
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Skipf(format string, args ...any)
}

// MustStartLibvirtd starts a daemon for a test and stops it in tb.Cleanup. It
// skips the test when libvirtd is not installed and fails it on any other
// error. An empty opts.CapsCacheDir defaults to [DefaultCapsCacheDir] so that
// only the first test run on a machine pays for QEMU probing.
func MustStartLibvirtd(tb TB, opts LibvirtdOptions) *Libvirtd {
	tb.Helper()
	if opts.CapsCacheDir == "" {
		opts.CapsCacheDir = DefaultCapsCacheDir()
	}
	// Generous: a cold capability probe takes ~8 s here, slower CI may need more.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d, err := StartLibvirtd(ctx, opts)
	if errors.Is(err, ErrLibvirtdNotFound) {
		tb.Skipf("skipping: %v", err)
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
