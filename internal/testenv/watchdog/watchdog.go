// Package watchdog cleans up after a process that may die without cleaning up itself:
// a test killed by its timeout, a lab stopped with SIGKILL. It runs a shell script
// that waits for its owner to exit, by any death, and then removes what the owner
// left behind. It does not know what to clean: the script says that.
package watchdog

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
)

// Start runs script (sh -c, with args as $1...) in a session of its own, its output to
// out (nil: discarded) and its stdin the read end of a pipe whose write end it returns. The script blocks reading
// stdin; when the owner exits, by any death, or closes the returned file, the pipe
// closes and the script cleans up what the owner could not. Its own session keeps a
// Ctrl-C to the owner's process group from killing it before it has done its job.
func Start(name, script string, out io.Writer, args ...string) (*exec.Cmd, *os.File, error) {
	r, w, err := os.Pipe() // close-on-exec: no daemon the owner starts inherits w
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command("/bin/sh", append([]string{"-c", script, name}, args...)...)
	cmd.Stdin = r
	cmd.Stdout, cmd.Stderr = out, out
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
