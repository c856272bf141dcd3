package launcher

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/vmi"
)

// podLayout creates <pods>/<uid>/volumes/kubernetes.io~empty-dir/libvirt-runtime/qemu/run
// and returns the non-root launcher of VMI ns/vm found in it.
func podLayout(t *testing.T) (Launcher, string) {
	t.Helper()
	pods := t.TempDir()
	ls, err := Find(pods, &vmi.VMI{Namespace: "ns", Name: "vm", Pods: []string{uidA}, RuntimeUser: 107})
	if err != nil {
		// t.TempDir is long; a long pods_dir only matters for sockets, so fall back
		// to building the launcher by hand.
		if !errors.Is(err, ErrSocketPathTooLong) {
			t.Fatal(err)
		}
		dir := filepath.Join(pods, uidA, VolumeRelPath)
		ls = []Launcher{{Domain: "ns_vm", RuntimeDir: dir, StatusFile: filepath.Join(dir, "qemu", "run", "ns_vm.xml")}}
	}
	if err := os.MkdirAll(filepath.Dir(ls[0].StatusFile), 0o755); err != nil {
		t.Fatal(err)
	}
	return ls[0], pods
}

const statusDoc = "<!--\nWARNING\n-->\n\n<domstatus state='running' reason='booted' pid='42'>\n  <domain type='kvm' id='1'>\n    <name>ns_vm</name>\n  </domain>\n</domstatus>\n"

func TestReadStatus(t *testing.T) {
	l, _ := podLayout(t)
	if err := os.WriteFile(l.StatusFile, []byte(statusDoc), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := l.ReadStatus()
	if err != nil {
		t.Fatal(err)
	}
	if got != statusDoc {
		t.Errorf("ReadStatus = %q, want %q", got, statusDoc)
	}
}

func TestReadStatusMissing(t *testing.T) {
	l, pods := podLayout(t)
	// No file yet: the domain is not running.
	_, err := l.ReadStatus()
	if !errors.Is(err, ErrNoStatusFile) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: err = %v, want ErrNoStatusFile and fs.ErrNotExist", err)
	}
	// No pod directory at all: the pod is gone or not there yet.
	if err := os.RemoveAll(filepath.Join(pods, uidA)); err != nil {
		t.Fatal(err)
	}
	if _, err := l.ReadStatus(); !errors.Is(err, ErrNoStatusFile) {
		t.Errorf("missing pod: err = %v, want ErrNoStatusFile", err)
	}
}

// TestReadStatusStaysInsidePod: the emptyDir is writable by the launcher pod, whose
// symlinks must not make the collector read host files.
func TestReadStatusStaysInsidePod(t *testing.T) {
	outside := filepath.Join(t.TempDir(), "secret.xml")
	if err := os.WriteFile(outside, []byte(statusDoc), 0o600); err != nil {
		t.Fatal(err)
	}

	t.Run("file symlink", func(t *testing.T) {
		l, _ := podLayout(t)
		if err := os.Symlink(outside, l.StatusFile); err != nil {
			t.Fatal(err)
		}
		if got, err := l.ReadStatus(); err == nil {
			t.Errorf("ReadStatus followed a symlink out of the pod and read %q", got)
		}
	})
	t.Run("directory symlink", func(t *testing.T) {
		l, _ := podLayout(t)
		elsewhere := t.TempDir()
		if err := os.WriteFile(filepath.Join(elsewhere, "ns_vm.xml"), []byte(statusDoc), 0o600); err != nil {
			t.Fatal(err)
		}
		run := filepath.Dir(l.StatusFile)
		if err := os.Remove(run); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(elsewhere, run); err != nil {
			t.Fatal(err)
		}
		if got, err := l.ReadStatus(); err == nil {
			t.Errorf("ReadStatus followed a directory symlink out of the pod and read %q", got)
		}
	})
	t.Run("symlink inside the pod", func(t *testing.T) {
		// libvirt does not do this, but nothing is wrong with it.
		l, _ := podLayout(t)
		real := filepath.Join(l.RuntimeDir, "elsewhere.xml")
		if err := os.WriteFile(real, []byte(statusDoc), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("../../elsewhere.xml", l.StatusFile); err != nil {
			t.Fatal(err)
		}
		if got, err := l.ReadStatus(); err != nil || got != statusDoc {
			t.Errorf("ReadStatus = %q, %v; want the document", got, err)
		}
	})
}

func TestReadStatusRejectsNonFiles(t *testing.T) {
	t.Run("fifo", func(t *testing.T) {
		l, _ := podLayout(t)
		if err := syscall.Mkfifo(l.StatusFile, 0o600); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			_, err := l.ReadStatus()
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "not a regular file") {
				t.Errorf("ReadStatus on a FIFO: err = %v, want not a regular file", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("ReadStatus blocked on a FIFO")
		}
	})
	t.Run("directory", func(t *testing.T) {
		l, _ := podLayout(t)
		if err := os.Mkdir(l.StatusFile, 0o755); err != nil {
			t.Fatal(err)
		}
		if _, err := l.ReadStatus(); err == nil || errors.Is(err, ErrNoStatusFile) {
			t.Errorf("ReadStatus on a directory: err = %v, want a non-ErrNoStatusFile error", err)
		}
	})
	t.Run("too large", func(t *testing.T) {
		l, _ := podLayout(t)
		if err := os.WriteFile(l.StatusFile, make([]byte, MaxStatusFileSize+1), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := l.ReadStatus(); err == nil || !strings.Contains(err.Error(), "larger than") {
			t.Errorf("ReadStatus on a huge file: err = %v, want larger than", err)
		}
	})
}

func TestReadStatusRejectsStatusFileOutsideRuntimeDir(t *testing.T) {
	l, _ := podLayout(t)
	l.StatusFile = filepath.Join(l.RuntimeDir, "..", "x.xml")
	if _, err := l.ReadStatus(); err == nil || !strings.Contains(err.Error(), "not inside") {
		t.Errorf("err = %v, want not inside", err)
	}
}
