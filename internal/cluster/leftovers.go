package cluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// HostState is what a node could leave behind on the host, read at one moment:
// taken before Start and compared after Stop (or after its owner died and the
// watchdog ran), it tells whether the teardown removed everything. Another node
// coming or going in between would spoil the comparison, hence HoldHost.
type HostState struct {
	iptables []string // rules and chains of every table, counters left out
	links    []string
	mounts   []string // mount points
	sysctls  map[string]string
	kubelet  bool // whether /var/lib/kubelet exists
}

// hostLockPath is held by a test comparing the host before and after a node, so that
// only one such test runs at a time on the machine.
const hostLockPath = "/run/lock/otelcol-kubevirt-host.lock"

// HoldHost waits until no other holder compares the host's state and no node runs,
// reads the host's state, and holds the right to compare until release is called:
// compare with before.Leftovers before releasing. A node that does not compare (a lab
// of `make run`) still running when the state is read would make its leftovers this
// holder's, hence the wait for the node lock, which is let go again for Start.
func HoldHost(ctx context.Context) (before HostState, release func(), err error) {
	f, err := lockWait(ctx, hostLockPath, func() {})
	if err != nil {
		return HostState{}, nil, err
	}
	node, err := lockWait(ctx, lockPath, func() {})
	if err != nil {
		f.Close()
		return HostState{}, nil, err
	}
	before, err = readHostState()
	node.Close()
	if err != nil {
		f.Close()
		return HostState{}, nil, err
	}
	return before, func() { f.Close() }, nil
}

// readHostState reads the host's state as Leftovers compares it.
func readHostState() (HostState, error) {
	s := HostState{sysctls: map[string]string{}}
	out, err := exec.Command("iptables-save").Output()
	if err != nil {
		return s, fmt.Errorf("iptables-save: %w", err)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "#") || strings.TrimSpace(l) == "" {
			continue // comments carry timestamps
		}
		if strings.HasPrefix(l, ":") { // ":CHAIN POLICY [packets:bytes]"
			if f := strings.Fields(l); len(f) > 2 {
				l = f[0] + " " + f[1]
			}
		}
		s.iptables = append(s.iptables, l)
	}
	if out, err = exec.Command("ip", "-o", "link", "show").Output(); err != nil {
		return s, fmt.Errorf("ip link: %w", err)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(l); len(f) > 1 {
			s.links = append(s.links, strings.TrimSuffix(f[1], ":"))
		}
	}
	mountinfo, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return s, err
	}
	for _, l := range strings.Split(string(mountinfo), "\n") {
		if f := strings.Fields(l); len(f) > 4 {
			s.mounts = append(s.mounts, f[4])
		}
	}
	for _, key := range hostSysctls {
		if v, err := os.ReadFile(filepath.Join("/proc/sys", key)); err == nil {
			s.sysctls[key] = strings.TrimSpace(string(v))
		}
	}
	_, err = os.Stat("/var/lib/kubelet")
	s.kubelet = err == nil
	return s, nil
}

// Leftovers lists what a node left on the host compared with before: processes,
// cgroups, state directories, network devices, iptables rules, mounts, host
// settings. It is empty when the teardown removed everything.
func (before HostState) Leftovers() ([]string, error) {
	now, err := readHostState()
	if err != nil {
		return nil, err
	}
	var left []string
	added := func(what string, was, is []string) {
		for _, x := range is {
			if !slices.Contains(was, x) {
				left = append(left, what+" "+x)
			}
		}
	}
	added("iptables:", before.iptables, now.iptables)
	added("network device", before.links, now.links)
	added("mount at", before.mounts, now.mounts)
	for k, v := range before.sysctls {
		if now.sysctls[k] != v {
			left = append(left, fmt.Sprintf("sysctl %s is %s, was %s", k, now.sysctls[k], v))
		}
	}
	if now.kubelet != before.kubelet {
		left = append(left, fmt.Sprintf("/var/lib/kubelet exists: %v, before: %v", now.kubelet, before.kubelet))
	}
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*/" + cgroupName)
	if d, _ := filepath.Glob("/sys/fs/cgroup/" + cgroupName); d != nil {
		dirs = append(dirs, d...)
	}
	for _, d := range dirs {
		left = append(left, "cgroup "+d)
	}
	states, _ := filepath.Glob("/var/tmp/otelcol-kubevirt-node-*")
	for _, d := range states {
		left = append(left, "state directory "+d)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cgroup")
	for _, p := range procs {
		if zombie(filepath.Dir(p)) {
			continue // dead, waiting for init to reap it: nothing left but its pid
		}
		if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), "/"+cgroupName) {
			cmd, _ := os.ReadFile(filepath.Join(filepath.Dir(p), "cmdline"))
			left = append(left, fmt.Sprintf("process %s: %s", filepath.Base(filepath.Dir(p)), strings.ReplaceAll(string(cmd), "\x00", " ")))
		}
	}
	return left, nil
}

// zombie says whether the process at /proc/<pid> has exited.
func zombie(proc string) bool {
	status, err := os.ReadFile(filepath.Join(proc, "status"))
	return err != nil || strings.Contains(string(status), "\nState:\tZ")
}
