package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
)

// startWatchdog runs script (sh -c, with args as $1...) in a session of its own, with
// its stdin the read end of a pipe whose write end it returns. The script blocks reading
// stdin; when the owner exits, by any death, the pipe closes and the script cleans up
// what the owner could not. Its own session keeps a Ctrl-C to the owner's process group
// from killing it before it has done its job.
func startWatchdog(name, script string, args ...string) (*exec.Cmd, *os.File, error) {
	r, w, err := os.Pipe() // close-on-exec: no daemon the owner starts inherits w
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command("/bin/sh", append([]string{"-c", script, name}, args...)...)
	cmd.Stdin = r
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return nil, nil, fmt.Errorf("starting %s: %w", name, err)
	}
	r.Close()
	return cmd, w, nil
}
