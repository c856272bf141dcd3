package testenv

import (
	"os"
	"path/filepath"
)

// TestDriverNode is a node for libvirt's in-process test driver: a domain of each type
// the receiver knows (kvm, qemu, hyperv) named as KubeVirt names them, one type it does
// not know (test), and one domain defined but shut off (default_stopped-vm).
const TestDriverNode = `<node>
  <domain type='kvm'><name>default_kvm-vm</name><memory>65536</memory><os><type arch='x86_64'>hvm</type></os></domain>
  <domain type='qemu'><name>default_tcg-vm</name><memory>65536</memory><os><type arch='x86_64'>hvm</type></os></domain>
  <domain type='hyperv'><name>other_mshv-vm</name><memory>65536</memory><os><type arch='x86_64'>hvm</type></os></domain>
  <domain type='test'><name>default_test-vm</name><memory>65536</memory><os><type arch='x86_64'>hvm</type></os></domain>
  <domain type='kvm' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>
    <name>default_stopped-vm</name><memory>65536</memory><os><type arch='x86_64'>hvm</type></os>
    <test:runstate>5</test:runstate>
  </domain>
</node>`

// TestDriverURI writes TestDriverNode into a temporary directory of tb and returns the
// test driver's URI for it. Every connection to that URI starts from the file afresh.
func TestDriverURI(tb TB) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "node.xml")
	if err := os.WriteFile(path, []byte(TestDriverNode), 0o600); err != nil {
		tb.Fatalf("writing the test driver's node: %v", err)
	}
	return "test://" + path
}
