package tied

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// A process started by Start outlives the thread of the goroutine that started it,
// which the Go runtime ends when that goroutine locked it and returns (as Libvirtd's
// daemon goroutines do). Started from that thread, Pdeathsig would kill it.
func TestTiedProcessOutlivesItsStartersThread(t *testing.T) {
	type started struct {
		cmd *exec.Cmd
		tid int
		err error
	}
	ch := make(chan *started, 1)
	exited := make(chan error, 1)
	var s *started
	// The runtime never ends the main thread (it parks it instead). A goroutine that
	// lands on it keeps it, so that the next one cannot, until the test ends.
	release := make(chan struct{})
	defer close(release)
	for range 100 {
		go func() {
			runtime.LockOSThread() // never unlocked below: the thread ends with the goroutine
			if syscall.Gettid() == os.Getpid() {
				ch <- nil
				<-release
				runtime.UnlockOSThread()
				return
			}
			cmd := exec.Command("sleep", "600")
			err := Start(cmd, func(err error) { exited <- err })
			ch <- &started{cmd, syscall.Gettid(), err}
		}()
		if s = <-ch; s != nil {
			break
		}
	}
	if s == nil {
		t.Fatal("every goroutine ran on the main thread")
	}
	if s.err != nil {
		t.Fatal(s.err)
	}
	alive := true
	t.Cleanup(func() {
		if alive {
			_ = s.cmd.Process.Kill()
			if err := <-exited; err == nil {
				t.Error("the tied process reported a clean exit after SIGKILL")
			}
		}
	})
	// Once the starter's thread is gone, a child it had forked has been sent its
	// parent-death signal.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(fmt.Sprintf("/proc/self/task/%d", s.tid)); os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the starting goroutine's thread %d (pid %d) did not end within 10 s", s.tid, os.Getpid())
		}
	}
	select {
	case err := <-exited:
		alive = false
		t.Fatalf("the process died with the thread of the goroutine that started it: %v", err)
	case <-time.After(time.Second): // SIGKILL takes effect in far less
	}
}
