package testenv

// What a Libvirtd leaves running: QEMU and virtlogd daemonize, so they are
// found by the HOME they inherit, in /proc. Stop kills them with killByEnv;
// should the owner die without calling Stop, the reaper watchdog does the same.

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv/watchdog"
)

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
