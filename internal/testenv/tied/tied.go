// Package tied starts child processes that die with this process, and not before,
// whichever goroutine starts them. It does not stop them, collect their output or
// restart them: the caller does, through the exec.Cmd and the exit callback.
package tied

import (
	"os/exec"
	"runtime"
	"syscall"
)

// Start starts cmd so that it gets SIGKILL when this process dies, and not before,
// then calls exited with Wait's result once cmd has exited.
//
// Linux sends the parent-death signal (Pdeathsig) when the *thread* that forked the
// child exits, not the whole process, and the Go runtime ends a thread when a goroutine
// that locked it returns, as this package's own starters do whenever their child
// exits. A process forked from such a thread earlier, by a goroutine that merely ran
// on it, would be killed then. So cmd is started from a goroutine that locks a thread
// of its own and keeps it until cmd has exited: nothing else runs on that thread, and
// it ends only after the child did.
func Start(cmd *exec.Cmd, exited func(error)) error {
	return StartOnThread(cmd, nil, exited)
}

// StartOnThread is Start with onThread, if not nil, run first on the thread that
// forks cmd. What onThread sets on that thread (a CPU affinity) the child inherits,
// and nothing else is affected by it, since nothing else runs on that thread.
func StartOnThread(cmd *exec.Cmd, onThread func(), exited func(error)) error {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	started := make(chan error, 1)
	go func() {
		// Deliberately never unlocked: the thread ends with this goroutine, after the
		// child was reaped.
		runtime.LockOSThread()
		if onThread != nil {
			onThread()
		}
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		exited(cmd.Wait())
	}()
	return <-started
}
