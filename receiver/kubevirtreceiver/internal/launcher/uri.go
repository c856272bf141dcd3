package launcher

import (
	"errors"
	"strings"

	"libvirt.org/go/libvirt"
)

// URIs returns the session- and system-mode libvirt URIs of the QEMU driver behind the
// unix socket at socket: qemu+unix:///session?socket=<socket> and
// qemu+unix:///system?socket=<socket>. The socket path is percent-encoded where a URI
// needs it (libvirt decodes query values), so any pods_dir works.
func URIs(socket string) (session, system string) {
	q := "?socket=" + escapeQueryValue(socket)
	return "qemu+unix:///session" + q, "qemu+unix:///system" + q
}

// escapeQueryValue percent-encodes everything but RFC 3986 unreserved characters and
// "/", so that ordinary paths stay readable in URIs and logs.
func escapeQueryValue(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~/", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0xf])
	}
	return b.String()
}

// IsPathRefused reports whether err is a libvirt daemon refusing the URI's path, which
// means the launcher runs the other way than status.runtimeUser said and
// [Launcher.FallbackURI] is the one to use. A session-mode (non-root) daemon answers
// qemu:///system with, measured with libvirt 9.0:
//
//	virError(Code=1, Domain=0, Message='internal error: unexpected qemu URI path '/system', try qemu:///session')
//
// (libvirt's virConnectValidateURIPath; a root daemon would likewise say "try
// qemu:///system", though for QEMU it also accepts /session). The message is
// translatable, so a typed libvirt error is matched on its code and the untranslated
// URI in it; a plain error only on the English text.
func IsPathRefused(err error) bool {
	if err == nil {
		return false
	}
	var lverr libvirt.Error
	if errors.As(err, &lverr) {
		return lverr.Code == libvirt.ERR_INTERNAL_ERROR &&
			(strings.Contains(lverr.Message, "qemu:///session") || strings.Contains(lverr.Message, "qemu:///system"))
	}
	return strings.Contains(err.Error(), "unexpected qemu URI path")
}
