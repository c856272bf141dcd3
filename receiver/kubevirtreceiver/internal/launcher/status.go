package launcher

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// MaxStatusFileSize bounds how much of a status file is read. Real ones are ~10 KB
// (most of it QEMU's capability list); the bound only protects against a launcher
// pod that put something else there.
const MaxStatusFileSize = 4 << 20

// ErrNoStatusFile means the launcher's status file does not exist: the domain is not
// running (yet), the pod is gone, or the launcher keeps its state elsewhere. Ask the
// launcher's libvirt over the socket instead.
var ErrNoStatusFile = errors.New("no domain status file")

// ReadStatus returns the content of l.StatusFile: libvirt's <domstatus> document with
// the live <domain> inside, which [hypervisor.Detect] reads. It takes no lock and
// makes no call into libvirt, which writes the file while starting the domain
// (replacing it whole, by rename, on every update) and removes it when the domain
// stops. A missing file (or pod directory) gives an error wrapping [ErrNoStatusFile]
// and fs.ErrNotExist.
//
// The emptyDir belongs to the launcher pod, which a compromised guest may control, so
// the file is opened read-only without following symlinks out of the pod's
// libvirt-runtime directory, must be a regular file (a FIFO would block) and is read
// up to [MaxStatusFileSize] bytes.
//
// [hypervisor.Detect]: github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/hypervisor.Detect
func (l Launcher) ReadStatus() (string, error) {
	rel, err := filepath.Rel(l.RuntimeDir, l.StatusFile)
	if err != nil || !filepath.IsLocal(rel) {
		return "", fmt.Errorf("status file %s is not inside %s", l.StatusFile, l.RuntimeDir)
	}
	root, err := os.OpenRoot(l.RuntimeDir)
	if err != nil {
		return "", statusError(l.StatusFile, err)
	}
	defer root.Close()
	// O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
	f, err := root.OpenFile(rel, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return "", statusError(l.StatusFile, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", statusError(l.StatusFile, err)
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("status file %s is not a regular file (%v)", l.StatusFile, st.Mode().Type())
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxStatusFileSize+1))
	if err != nil {
		return "", statusError(l.StatusFile, err)
	}
	if len(data) > MaxStatusFileSize {
		return "", fmt.Errorf("status file %s is larger than %d bytes", l.StatusFile, MaxStatusFileSize)
	}
	return string(data), nil
}

// statusError wraps err, marking a missing file with ErrNoStatusFile and a permission
// problem with what the collector needs.
func statusError(path string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w %s: %w", ErrNoStatusFile, path, err)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("reading status file %s: %w (launcher files belong to the launcher's user; "+
			"the collector must run as root with CAP_DAC_OVERRIDE)", path, err)
	default:
		return fmt.Errorf("reading status file %s: %w", path, err)
	}
}
