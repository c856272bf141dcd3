package testenv

// Where a Libvirtd's files live: the directories StartLibvirtd prepares (and
// the length limits unix sockets put on them), libvirtd.conf, and the paths of
// its socket, log and runtime state. doc.go has the whole map.

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// LibvirtdSocketName is the file name of the API socket Debian's monolithic
// libvirtd binds in [LibvirtdOptions.SocketDir]. It is not the socket a
// collector dials in a launcher pod: virt-launcher's virtqemud names that one
// [LauncherSocketName] (virtqemud-sock), which [Node.StartLauncher] makes a
// symlink to this one.
const LibvirtdSocketName = "libvirt-sock"

const (
	// maxSocketPath is the longest path a unix socket may have (sun_path is
	// 108 bytes including the terminating NUL).
	maxSocketPath = 107
	// maxDirLen bounds LibvirtdOptions.Dir so that the monitor socket
	// <Dir>/cfg/libvirt/qemu/lib/domain-<id>-<name>/monitor.sock fits:
	// libvirt shortens <name> to 20 bytes, which leaves ~39 bytes for Dir.
	maxDirLen = 36
)

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

// URI is the libvirt connection URI of the daemon,
// qemu+unix:///session?socket=<SocketDir>/libvirt-sock.
func (d *Libvirtd) URI() string {
	return "qemu+unix:///session?socket=" + d.SocketPath()
}

// SocketPath is the path of libvirtd's API socket.
func (d *Libvirtd) SocketPath() string { return filepath.Join(d.socketDir, LibvirtdSocketName) }

// Dir is the daemon's private directory (see [LibvirtdOptions.Dir]).
func (d *Libvirtd) Dir() string { return d.dir }

// RuntimeDir is the daemon's XDG_RUNTIME_DIR.
func (d *Libvirtd) RuntimeDir() string { return d.runtimeDir }

// LogPath is the file that receives libvirtd's stderr.
func (d *Libvirtd) LogPath() string { return d.logPath }

// LibvirtRuntimeDir is <RuntimeDir>/libvirt, or [LibvirtdOptions.LibvirtRuntimeDir]
// if that was set: the directory holding libvirt's runtime state.
func (d *Libvirtd) LibvirtRuntimeDir() string { return d.libvirtRun }
