// Package testenv starts the real things the tests run against, and stops them
// without a trace: a kube-apiserver serving KubeVirt's VirtualMachineInstances,
// libvirtd daemons set up the way KubeVirt's virt-launcher runs libvirt, with real
// QEMU guests in them, a kubelet-style pods directory of such launchers, the built
// collector, and a Prometheus server. It fakes none of them. KubeVirt itself does
// not run: tests play its controllers by setting VMI status ([APIServer.SetVMIStatus],
// [LauncherPod.RunningStatus]). Nor does a Kubernetes node (kubelet, containerd,
// pods): internal/cluster and internal/lab run one, for `make run` and the
// DaemonSet's test.
//
// Each StartX takes a context and returns an error rather than taking a
// *testing.T, so that one harness can serve many benchmarks from a TestMain
// (internal/bench); the MustStartX wrappers start one for a single test, stop it in
// its Cleanup and skip the test when what they start is not installed.
//
// # Where to look
//
//	doc.go         this overview; below, how libvirtd runs and where its files land
//	kube.go        APIServer: etcd and kube-apiserver (envtest), VMIs and their status, users without rights, CRDs removed and restored
//	apiproxy.go    APIProxy: between clients and the API server, cutting them off, counting lists and expired watches, editing objects
//	testdriver.go  TestDriverNode and TestDriverURI: libvirt's in-process test driver with a domain of each type
//	libvirtd.go    Libvirtd's lifecycle: start, readiness, kill, restart, stop
//	layout.go      its directories, libvirtd.conf, and the paths of its socket, log and state
//	caps.go        the QEMU capability cache shared between daemons ("Timing" below)
//	cpu.go         pinning libvirtd to one CPU, which keeps that cache valid
//	procscan.go    finding and killing what a daemon leaves running (QEMU, virtlogd), also after its owner died
//	guests.go      QEMU guests: define, start, destroy; their status files, logs and PIDs
//	kvm.go         whether /dev/kvm works, for this process and for a daemon's user
//	node.go        Node: a kubelet pods directory of virt-launcher-like pods, each a Libvirtd with one guest
//	collector.go   Collector: the built otelcol-kubevirt and its Prometheus endpoint
//	prometheus.go  Prometheus: a real server scraping given targets, and instant queries
//	daemons.go     RequireDaemons: the switch that lets tests start daemons (`make test` sets it)
//	tb.go          TB, what the MustStartX wrappers need of a test
//
// Tests: libvirtd_test.go covers the libvirtd harness as a whole (each part needs
// a running daemon), kvm_test.go the KVM probe, node_test.go and kube_test.go
// theirs; the collector and Prometheus harnesses are exercised by internal/e2e.
//
// # How libvirtd runs
//
// A non-root virt-launcher runs libvirt unprivileged in session mode with
// XDG_RUNTIME_DIR=/var/run and the pod's "libvirt-runtime" emptyDir mounted
// at /var/run/libvirt. This package does the same with Debian 12's
// monolithic libvirtd:
//
//   - libvirtd runs as an unprivileged user ([DefaultUser], "nobody", unless
//     [LibvirtdOptions.User] says otherwise), which puts it in session mode.
//   - XDG_CONFIG_HOME, XDG_CACHE_HOME and HOME live in a short private
//     directory ([LibvirtdOptions.Dir], default /tmp/lvNNNNNNNNN). It must be
//     short because libvirt puts each guest's QEMU monitor socket under
//     $XDG_CONFIG_HOME/libvirt/qemu/lib/domain-<id>-<name>/monitor.sock and
//     unix socket paths are limited to 107 bytes.
//   - XDG_RUNTIME_DIR is [LibvirtdOptions.RuntimeDir]; libvirt keeps its
//     runtime state in <RuntimeDir>/libvirt, which
//     [LibvirtdOptions.LibvirtRuntimeDir] can redirect (by a symlink) into a
//     kubelet-style emptyDir of any path length.
//   - The daemon's libvirtd.conf (passed with --config) sets unix_sock_dir
//     ([LibvirtdOptions.SocketDir], default <RuntimeDir>/libvirt, which is
//     also libvirt's own session default).
//
// Clients (root, or the daemon's user) connect with
//
//	qemu+unix:///session?socket=<SocketDir>/libvirt-sock
//
// e.g. qemu+unix:///session?socket=/tmp/lv123456789/run/libvirt/libvirt-sock.
// libvirt-sock is [LibvirtdSocketName]. In a [Node]'s launcher pods,
// virtqemud-sock ([LauncherSocketName], the name virt-launcher's virtqemud
// gives its socket) is a symlink to it.
//
// # Where things land
//
// With L = <RuntimeDir>/libvirt (or LibvirtRuntimeDir) and D = Dir, measured
// with libvirt 9.0.0 and QEMU 7.2:
//
//	L/libvirt-sock, libvirt-admin-sock   API and admin sockets (default SocketDir)
//	L/libvirtd.pid                       daemon pid file
//	L/virtlogd-sock, virtlogd.pid        virtlogd, spawned by libvirtd
//	L/qemu/run/<name>.xml                live status: <domstatus state='running' pid=...><domain type='kvm' id=...>
//	L/qemu/run/<name>.pid                QEMU pid
//	D/cfg/libvirt/qemu/<name>.xml        persistent definition
//	D/cfg/libvirt/qemu/lib/domain-<id>-<name>/monitor.sock  QMP monitor
//	D/cache/libvirt/qemu/log/<name>.log  QEMU stdout/stderr (via virtlogd)
//	D/cache/libvirt/qemu/cache/capabilities/*.xml  QEMU capability cache
//	D/libvirtd.log                       libvirtd's stderr (warnings and errors)
//
// On a KubeVirt node the status file is therefore
// <kubelet>/pods/<pod-uid>/volumes/kubernetes.io~empty-dir/libvirt-runtime/qemu/run/<namespace>_<name>.xml.
//
// # Processes and lifetime
//
// QEMU and virtlogd daemonize (new session, re-parented to PID 1), so neither
// process groups nor Pdeathsig reach them. Guests therefore survive a
// libvirtd restart or crash, and the next libvirtd re-attaches to them from
// the status files, after SIGTERM and after SIGKILL alike; status files stay
// in place while no daemon runs. [Libvirtd.StartDaemon] returns only after
// the re-attach finished. [Libvirtd.Stop] finds the daemon's descendants by
// their environment (each inherits HOME=<Dir>/home) and kills them. Should
// the owning process die without calling Stop, libvirtd gets SIGKILL via
// Pdeathsig and a small watchdog shell process kills the rest as soon as
// the owner's end of a pipe closes.
//
// # Timing
//
// A fresh daemon probes every qemu-system-* binary it finds (about 4 s each
// here: x86_64 and i386). [LibvirtdOptions.CapsCacheDir] seeds and persists
// that cache across daemons, after which a daemon answers in 0.1-0.3 s.
// libvirt discards the cache when the host CPUID it reads differs from the
// cached one, and CPUID differs between CPUs, so libvirtd is started pinned
// to one CPU (libvirt widens each QEMU's affinity to all CPUs again). A TCG
// or KVM guest without disks starts in 0.2-0.6 s and then idles in SeaBIOS,
// which is all the tests need.
package testenv
