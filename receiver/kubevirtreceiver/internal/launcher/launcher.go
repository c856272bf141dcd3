// Package launcher finds, from outside the pod, the libvirt of a VMI's virt-launcher
// pod on this node: its socket, the libvirt URIs to try, and the domain status file
// libvirt keeps next to it. It only computes paths and reads files; it makes no libvirt
// calls.
//
// On a KubeVirt node every VMI's launcher pod runs its own libvirt daemon with its
// runtime directory in the pod's "libvirt-runtime" emptyDir. kubelet keeps that
// emptyDir at <kubelet-root>/pods/<podUID>/volumes/kubernetes.io~empty-dir/
// libvirt-runtime on the host; a collector that mounts the host's pods directory at
// pods_dir (/pods) reaches
//
//	<pods_dir>/<podUID>/volumes/kubernetes.io~empty-dir/libvirt-runtime/virtqemud-sock
//	<pods_dir>/<podUID>/volumes/kubernetes.io~empty-dir/libvirt-runtime/qemu/run/<ns>_<name>.xml  (non-root launcher)
//	<pods_dir>/<podUID>/volumes/kubernetes.io~empty-dir/libvirt-runtime/qemu/<ns>_<name>.xml      (root launcher)
//
// The pod UIDs come from the VMI's status.activePods ([vmi.VMI.Pods]), and
// status.runtimeUser says whether the launcher's libvirt runs as root (0) or not. The
// domain is named <namespace>_<name> ([DomainName]).
package launcher

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/vmi"
)

const (
	// VolumeRelPath is the launcher's libvirt-runtime emptyDir relative to its pod's
	// directory under the kubelet pods directory.
	VolumeRelPath = "volumes/kubernetes.io~empty-dir/libvirt-runtime"
	// VirtqemudSocket is the launcher libvirt's API socket in that emptyDir.
	// virt-launcher runs virtqemud, whose default socket this is.
	VirtqemudSocket = "virtqemud-sock"
	// MaxSocketPath is the longest unix socket path libvirt can dial: sun_path holds
	// 108 bytes and libvirt needs one for the terminating NUL.
	MaxSocketPath = 107
	// PodUIDLen is the length of a Kubernetes pod UID (a UUID in text form).
	PodUIDLen = 36
	// MaxPodsDirLen is the longest pods_dir whose launcher sockets still fit:
	// <pods_dir>/<36-byte UID>/volumes/kubernetes.io~empty-dir/libvirt-runtime/
	// virtqemud-sock leaves 7 bytes. "/pods" (as virt-handler mounts it) fits.
	MaxPodsDirLen = MaxSocketPath - (1 + PodUIDLen + 1 + len(VolumeRelPath) + 1 + len(VirtqemudSocket))
)

var (
	// ErrNoLauncher means the VMI lists no launcher pod on this node (yet): its
	// status.activePods is empty or names other nodes. Retry when the VMI changes.
	ErrNoLauncher = errors.New("no launcher pod of the VMI on this node")
	// ErrSocketPathTooLong means a launcher's socket path does not fit in a unix
	// socket address. Only a shorter pods_dir helps.
	ErrSocketPathTooLong = errors.New("launcher socket path too long for a unix socket")
)

// DomainName is the libvirt domain name KubeVirt's launcher gives the VMI
// namespace/name.
func DomainName(namespace, name string) string {
	return namespace + "_" + name
}

// SplitDomainName turns a domain name back into the VMI's namespace and name.
// Namespaces cannot contain '_', so the first one separates them.
func SplitDomainName(domain string) (namespace, name string, ok bool) {
	return strings.Cut(domain, "_")
}

// Launcher is one virt-launcher pod of a VMI on this node and where its libvirt is.
type Launcher struct {
	// Domain is the libvirt domain name of the VMI, <namespace>_<name>.
	Domain string
	// RuntimeDir is the pod's libvirt-runtime emptyDir as seen through pods_dir.
	RuntimeDir string
	// Socket is the launcher libvirt's API socket, <RuntimeDir>/virtqemud-sock.
	Socket string
	// URI is the libvirt URI to try first: qemu+unix:///session?socket=<Socket> for
	// a non-root launcher, qemu+unix:///system?socket=<Socket> for a root one.
	URI string
	// FallbackURI is the same socket with the other path, for when the daemon refuses
	// URI's path (see [IsPathRefused]): status.runtimeUser may be absent or wrong.
	FallbackURI string
	// StatusFile is where libvirt keeps the running domain's status XML:
	// <RuntimeDir>/qemu/run/<Domain>.xml for a non-root launcher,
	// <RuntimeDir>/qemu/<Domain>.xml for a root one. Read it with [Launcher.ReadStatus].
	StatusFile string
}

// Find returns the launchers of the VMI's launcher pods on this node (v.Pods), in
// their order: usually one. A migration within the node adds the target's, and the
// ended pods KubeVirt keeps listing in status.activePods after a migration (until
// the pod is deleted) add launchers that are gone. podsDir is the host's kubelet pods
// directory as mounted in the collector. With no launcher pod the error wraps [ErrNoLauncher]; with a socket path
// too long for a unix socket it wraps [ErrSocketPathTooLong] and tells the user to
// shorten pods_dir. Find looks at no file: which launchers still exist is the
// caller's to find out.
func Find(podsDir string, v *vmi.VMI) ([]Launcher, error) {
	if err := checkName("namespace", v.Namespace); err != nil {
		return nil, err
	}
	if err := checkName("name", v.Name); err != nil {
		return nil, err
	}
	if len(v.Pods) == 0 {
		return nil, fmt.Errorf("VMI %s/%s: %w (status.activePods names none)", v.Namespace, v.Name, ErrNoLauncher)
	}
	domain := DomainName(v.Namespace, v.Name)
	launchers := make([]Launcher, 0, len(v.Pods))
	for _, uid := range v.Pods {
		if err := checkPodUID(uid); err != nil {
			return nil, fmt.Errorf("VMI %s/%s: %w", v.Namespace, v.Name, err)
		}
		l := Launcher{
			Domain:     domain,
			RuntimeDir: filepath.Join(podsDir, uid, VolumeRelPath),
		}
		l.Socket = filepath.Join(l.RuntimeDir, VirtqemudSocket)
		if len(l.Socket) > MaxSocketPath {
			return nil, fmt.Errorf("VMI %s/%s: %w: %s is %d bytes, a unix socket path allows at most %d; "+
				"mount the host's kubelet pods directory at a shorter libvirt.pods_dir (at most %d bytes, e.g. /pods)",
				v.Namespace, v.Name, ErrSocketPathTooLong, l.Socket, len(l.Socket), MaxSocketPath, MaxPodsDirLen)
		}
		session, system := URIs(l.Socket)
		if v.RuntimeUser != 0 {
			l.URI, l.FallbackURI = session, system
			l.StatusFile = filepath.Join(l.RuntimeDir, "qemu", "run", domain+".xml")
		} else {
			l.URI, l.FallbackURI = system, session
			l.StatusFile = filepath.Join(l.RuntimeDir, "qemu", domain+".xml")
		}
		launchers = append(launchers, l)
	}
	return launchers, nil
}

// ValidatePodsDir checks libvirt.pods_dir at configuration time: it must be an
// absolute path short enough that launcher sockets below it fit in a unix socket
// address. Errors name the key, so Config.Validate can return them as they are.
func ValidatePodsDir(podsDir string) error {
	const key = "libvirt.pods_dir"
	switch {
	case podsDir == "":
		return fmt.Errorf("%s: must be set to the host's kubelet pods directory (/var/lib/kubelet/pods) as mounted in the collector, e.g. /pods", key)
	case !filepath.IsAbs(podsDir):
		return fmt.Errorf("%s: %q must be an absolute path", key, podsDir)
	}
	clean := filepath.Clean(podsDir)
	if len(clean) > MaxPodsDirLen {
		example := filepath.Join(clean, strings.Repeat("0", PodUIDLen), VolumeRelPath, VirtqemudSocket)
		return fmt.Errorf("%s: %q is %d bytes, too long: launcher sockets below it such as %s would be %d bytes, "+
			"and a unix socket path allows at most %d; mount the host's kubelet pods directory at a path of at most %d bytes, e.g. /pods",
			key, podsDir, len(clean), example, len(example), MaxSocketPath, MaxPodsDirLen)
	}
	return nil
}

// checkName rejects namespace and name values that could leave the status file's
// directory. Kubernetes never produces them, but a VMI's fields end up in paths.
func checkName(what, s string) error {
	if s == "" || s == "." || s == ".." || strings.ContainsAny(s, "/\x00") {
		return fmt.Errorf("VMI %s %q cannot name a libvirt domain", what, s)
	}
	return nil
}

// checkPodUID accepts what Kubernetes pod UIDs are made of (hex digits and dashes,
// letters for good measure) so that a UID can never leave pods_dir.
func checkPodUID(uid string) error {
	if uid == "" {
		return errors.New("empty pod UID in status.activePods")
	}
	for _, c := range uid {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-') {
			return fmt.Errorf("pod UID %q in status.activePods is not a Kubernetes UID", uid)
		}
	}
	return nil
}
