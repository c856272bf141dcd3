// Package testenv starts real dependencies for the receiver's integration
// tests and for the local "node lab" program, so its API takes no
// *testing.T (test conveniences such as [MustStartLibvirtd] are thin
// wrappers).
//
// [StartLibvirtd] runs a real libvirtd, set up the way a KubeVirt
// virt-launcher runs it, and [Libvirtd.StartGuest] starts real QEMU guests
// in it.
//
// # How libvirtd runs
//
// virt-launcher runs libvirt unprivileged in session mode with
// XDG_RUNTIME_DIR pointing into a pod volume. This package does the same with
// Debian 12's monolithic libvirtd:
//
//   - libvirtd runs as an unprivileged user ([DefaultUser], "nobody", unless
//     [LibvirtdOptions.User] says otherwise), which puts it in session mode.
//   - XDG_CONFIG_HOME, XDG_CACHE_HOME and HOME live in a short private
//     directory ([LibvirtdOptions.Dir], default /tmp/lvNNNNNNNNN). It must be
//     short because libvirt puts each guest's QEMU monitor socket under
//     $XDG_CONFIG_HOME/libvirt/qemu/lib/domain-<id>-<name>/monitor.sock and
//     unix socket paths are limited to 107 bytes.
//   - XDG_RUNTIME_DIR ([LibvirtdOptions.RuntimeDir]) is the caller's choice,
//     e.g. a kubelet-style emptyDir. The daemon's libvirtd.conf (passed with
//     --config) sets unix_sock_dir ([LibvirtdOptions.SocketDir], default
//     <RuntimeDir>/libvirt, which is also libvirt's own session default).
//
// Clients (root, or the daemon's user) connect with
//
//	qemu+unix:///session?socket=<SocketDir>/libvirt-sock
//
// # Where things land
//
// With RuntimeDir R and Dir D (measured with libvirt 9.0.0, QEMU 7.2):
//
//	R/libvirt/libvirt-sock              API socket (with the default SocketDir)
//	R/libvirt/libvirt-admin-sock        admin socket
//	R/libvirt/libvirtd.pid              daemon pid file
//	R/libvirt/virtlogd-sock, virtlogd.pid  virtlogd, spawned by libvirtd
//	R/libvirt/qemu/run/<name>.xml       live status file: <domstatus state=... pid=...><domain type=...>
//	R/libvirt/qemu/run/<name>.pid       QEMU pid
//	D/cfg/libvirt/qemu/<name>.xml       persistent definition
//	D/cfg/libvirt/qemu/lib/domain-<id>-<name>/monitor.sock  QMP monitor
//	D/cache/libvirt/qemu/log/<name>.log QEMU stdout/stderr (via virtlogd)
//	D/cache/libvirt/qemu/cache/capabilities/*.xml  QEMU capability cache
//	D/libvirtd.log                      libvirtd's stderr (warnings and errors)
//
// # Processes and lifetime
//
// QEMU and virtlogd daemonize (new session, re-parented to PID 1), so neither
// process groups nor Pdeathsig reach them. Guests therefore survive a
// libvirtd restart or crash, and libvirtd re-attaches to them from the status
// files when it comes back (both after SIGTERM and SIGKILL). [Libvirtd.Stop]
// finds them by their environment (every process libvirtd spawns inherits
// HOME=<Dir>/home) and kills them. In case the owning process dies without
// calling Stop, a small watchdog shell process does the same as soon as the
// owner's end of a pipe closes.
//
// # Timing
//
// Starting a fresh daemon makes libvirt probe every qemu-system-* binary it
// finds (about 4 s each here, x86_64 and i386). [LibvirtdOptions.CapsCacheDir]
// seeds and persists that cache across daemons (libvirt itself invalidates
// stale entries), after which the daemon answers in about 0.1 s. A TCG or KVM
// guest without disks starts in well under a second and then idles in
// SeaBIOS, which is all the tests need.
package testenv
