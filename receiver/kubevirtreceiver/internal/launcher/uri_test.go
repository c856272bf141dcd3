package launcher

import (
	"errors"
	"fmt"
	"testing"

	"libvirt.org/go/libvirt"
)

func TestURIs(t *testing.T) {
	for socket, want := range map[string]string{
		"/pods/u/volumes/kubernetes.io~empty-dir/libvirt-runtime/virtqemud-sock": "/pods/u/volumes/kubernetes.io~empty-dir/libvirt-runtime/virtqemud-sock",
		"/a b/c&d=e#f?g%h+i": "/a%20b/c%26d%3De%23f%3Fg%25h%2Bi",
	} {
		session, system := URIs(socket)
		if session != "qemu+unix:///session?socket="+want || system != "qemu+unix:///system?socket="+want {
			t.Errorf("URIs(%q) = %q, %q; want socket=%s", socket, session, system, want)
		}
	}
}

func TestIsPathRefused(t *testing.T) {
	// As measured from Debian 12's libvirtd 9.0 in session mode.
	refused := libvirt.Error{Code: libvirt.ERR_INTERNAL_ERROR, Domain: libvirt.FROM_NONE,
		Message: "internal error: unexpected qemu URI path '/system', try qemu:///session", Level: libvirt.ERR_ERROR}
	for name, tc := range map[string]struct {
		err  error
		want bool
	}{
		"session daemon refusing /system": {refused, true},
		"wrapped":                         {fmt.Errorf("connecting: %w", refused), true},
		"flattened to text":               {errors.New("connecting: " + refused.Error()), true},
		"root daemon refusing a path": {libvirt.Error{Code: libvirt.ERR_INTERNAL_ERROR,
			Message: "internal error: unexpected qemu URI path '/foo', try qemu:///system"}, true},
		"socket missing": {libvirt.Error{Code: libvirt.ERR_SYSTEM_ERROR, Domain: libvirt.FROM_RPC,
			Message: "Failed to connect socket to '/pods/x/virtqemud-sock': No such file or directory"}, false},
		"other internal error": {libvirt.Error{Code: libvirt.ERR_INTERNAL_ERROR, Message: "internal error: something else"}, false},
		"nil":                  {nil, false},
	} {
		if got := IsPathRefused(tc.err); got != tc.want {
			t.Errorf("%s: IsPathRefused(%v) = %v, want %v", name, tc.err, got, tc.want)
		}
	}
}
