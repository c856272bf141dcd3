package cluster

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv/tied"
)

// The node is a mount and a network namespace of its own, like a small VM sharing
// the host's kernel and file system:
//
//   - its network namespace has a veth to the host (hostIP <-> NodeIP), the CNI
//     bridge of its pods and kube-proxy's rules; the host reaches the API server at
//     NodeIP and pods through a route to PodCIDR;
//   - its mount namespace has /var/lib/kubelet and /var/log bound to directories of
//     the node's state directory and a private /run, so kubelet, containerd and their
//     mounts (volumes, rootfs, network namespace files) never show on the host;
//   - every process in it, containers included, runs below one cgroup, cgroupName,
//     so that teardown.sh can find and kill all of them.
//
// Ports inside are the node's own: the control plane listens on its usual ports
// without clashing with anything on the host.
const (
	// NodeIP is the node's address: the API server is https://NodeIP:6443, and
	// kubelet registers it as the node's InternalIP.
	NodeIP = "10.201.0.2"
	// hostIP is the host's end of the veth, the node's default gateway.
	hostIP     = "10.201.0.1"
	linkPrefix = "/30"
	// PodCIDR holds the pods' addresses (the CNI bridge's range); the host routes
	// it to NodeIP, so that a scraper on the host reaches pods as Prometheus in a
	// cluster would.
	PodCIDR = "10.244.0.0/24"
	// serviceCIDR holds Service cluster IPs; serviceIP is the `kubernetes` Service's.
	serviceCIDR = "10.96.0.0/16"
	serviceIP   = "10.96.0.1"
	apiPort     = "6443"

	cgroupName = "otelcol-kubevirt-node"
	// nodeCgroup holds the node's daemons; kubelet puts pods beside it, in
	// <cgroupName>/kubepods.
	nodeCgroup = cgroupName + "/node"
	hostVeth   = "kvnode0"
)

//go:embed teardown.sh
var teardownScript string

// joinScript runs its arguments (after the cgroup name) in the node's cgroup: sh -c
// joinScript join <cgroup> <command> [args...]. A process that forks before it moves
// could leave children behind, so the move happens before exec, in the same process.
const joinScript = `cg=$1; shift
for f in /sys/fs/cgroup/*/"$cg"/cgroup.procs /sys/fs/cgroup/"$cg"/cgroup.procs; do
	[ -e "$f" ] && echo $$ > "$f"
done
exec "$@"`

// hostSysctls are the host-wide settings kubelet changes at start
// (pkg/kubelet/cm.setupKernelTunables); teardown.sh puts them back.
var hostSysctls = []string{"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops", "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes"}

// process is one daemon of the node.
type process struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{} // closed when it has exited; err is set then
	err     error
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// makeCgroups creates the node's cgroup in every hierarchy, with nodeCgroup below
// it. cgroup v1's cpuset hierarchy refuses processes in a cgroup whose cpus and mems
// are empty, so those are copied from the parent.
func makeCgroups() error {
	roots, err := cgroupRoots()
	if err != nil {
		return err
	}
	for _, root := range roots {
		for _, rel := range []string{cgroupName, nodeCgroup} {
			dir := filepath.Join(root, rel)
			if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
				return fmt.Errorf("creating cgroup %s: %w", dir, err)
			}
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				parent, err := os.ReadFile(filepath.Join(filepath.Dir(dir), f))
				if err != nil {
					continue // not the cpuset hierarchy
				}
				if err := os.WriteFile(filepath.Join(dir, f), parent, 0o644); err != nil {
					return fmt.Errorf("setting %s of %s: %w", f, dir, err)
				}
			}
		}
	}
	return nil
}

// cgroupRoots are the mount points of the host's cgroup hierarchies: each v1
// controller's, and v2's.
func cgroupRoots() ([]string, error) {
	data, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return nil, err
	}
	var roots []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && (f[2] == "cgroup" || f[2] == "cgroup2") {
			roots = append(roots, f[1])
		}
	}
	if len(roots) == 0 {
		return nil, errors.New("no cgroup file system is mounted")
	}
	return roots, nil
}

// saveHostSysctls records the current value of each of hostSysctls in path, as
// key=value lines for teardown.sh.
func saveHostSysctls(path string) error {
	var b strings.Builder
	for _, key := range hostSysctls {
		v, err := os.ReadFile(filepath.Join("/proc/sys", key))
		if err != nil {
			continue // absent on this kernel
		}
		fmt.Fprintf(&b, "%s=%s\n", strings.ReplaceAll(key, "/", "."), strings.TrimSpace(string(v)))
	}
	return os.WriteFile(path, []byte(b.String()), 0o600)
}

// startHolder starts the process that creates and holds the node's namespaces, and
// sets them up: the veth to the host, the node's address and routes, its private
// /run and the binds of /var/lib/kubelet and /var/log. It returns the holder's pid,
// which every later process of the node enters with nsenter.
func (c *Cluster) startHolder(ctx context.Context) error {
	p, err := c.startProcess("holder", nil, "unshare", "--mount", "--net", "--propagation", "private", "--", "sleep", "infinity")
	if err != nil {
		return err
	}
	// unshare has run once the holder's network namespace is not ours.
	ours, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		return err
	}
	err = wait.PollUntilContextCancel(ctx, 10*time.Millisecond, true, func(context.Context) (bool, error) {
		if p.exited() {
			return false, fmt.Errorf("unshare exited: %v%s", p.err, tail(p.logPath))
		}
		ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", p.cmd.Process.Pid))
		return err == nil && ns != ours, nil
	})
	if err != nil {
		return fmt.Errorf("creating the node's namespaces: %w", err)
	}
	c.holderPID = p.cmd.Process.Pid

	pid := strconv.Itoa(c.holderPID)
	if err := run(ctx, "ip", "link", "add", hostVeth, "type", "veth", "peer", "name", "eth0", "netns", pid); err != nil {
		return err
	}
	if err := run(ctx, "sh", "-ec", `ip addr add "$1" dev "$2"; ip link set "$2" up; ip route add "$3" via "$4"`,
		"sh", hostIP+linkPrefix, hostVeth, PodCIDR, NodeIP); err != nil {
		return err
	}
	// Inside: /run private, so that containerd, runc and CNI keep their runtime
	// state off the host; the kubelet root where the DaemonSet's hostPath expects
	// it, but holding this node's pods only.
	return run(ctx, "nsenter", "--target", pid, "--mount", "--net", "--", "sh", "-ec", `
		mount -t tmpfs -o mode=0755 node-run /run
		mount --bind "$1/kubelet" /var/lib/kubelet
		mount --make-rshared /var/lib/kubelet
		mount --bind "$1/log" /var/log
		ip link set lo up
		ip addr add "$2" dev eth0
		ip link set eth0 up
		ip route add default via "$3"
		sysctl -qw net.ipv4.ip_forward=1`,
		"sh", c.dir, NodeIP+linkPrefix, hostIP)
}

// startProcess starts a daemon of the node in the node's cgroup, inside the node's
// namespaces once the holder exists, its output in logs/<name>.log.
func (c *Cluster) startProcess(name string, env []string, command string, args ...string) (*process, error) {
	logPath := filepath.Join(c.dir, "logs", name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child has its own descriptor
	argv := []string{"-c", joinScript, "join", nodeCgroup}
	if c.holderPID != 0 {
		argv = append(argv, "nsenter", "--target", strconv.Itoa(c.holderPID), "--mount", "--net", "--")
	}
	argv = append(argv, command)
	cmd := exec.Command("/bin/sh", append(argv, args...)...)
	cmd.Dir = c.dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Killed with its owner (tied.Start: from a thread that lives as long as the
	// child, since the node's test also runs testenv's Prometheus, whose starter ends
	// its thread when Prometheus exits, and a daemon forked from that thread earlier
	// was killed with it); containers and shims, which outlive a killed daemon, are
	// the watchdog's (teardown.sh).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p := &process{name: name, logPath: logPath, cmd: cmd, done: make(chan struct{})}
	if err := tied.Start(cmd, func(err error) { p.err = err; close(p.done) }); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	c.procs = append(c.procs, p)
	return p, nil
}

// run runs a short command on the host and returns its output in the error.
func run(ctx context.Context, command string, args ...string) error {
	out, err := exec.CommandContext(ctx, command, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", command, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// tail returns the last lines of a log, for error messages.
func tail(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return "\n  " + path + ":\n    " + strings.Join(lines, "\n    ")
}
