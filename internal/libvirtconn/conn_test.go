package libvirtconn

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/hypervisor"
)

// testNode is a node for libvirt's in-process test driver: domains of every type the
// receiver knows, one it does not, and one that is defined but shut off.
const testNode = `<node>
  <domain type='kvm'><name>default_kvm-vm</name><memory>65536</memory><os><type arch='x86_64'>hvm</type></os></domain>
  <domain type='qemu'><name>default_tcg-vm</name><memory>65536</memory><os><type arch='x86_64'>hvm</type></os></domain>
  <domain type='hyperv'><name>other_mshv-vm</name><memory>65536</memory><os><type arch='x86_64'>hvm</type></os></domain>
  <domain type='test'><name>default_test-vm</name><memory>65536</memory><os><type arch='x86_64'>hvm</type></os></domain>
  <domain type='kvm' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>
    <name>default_stopped-vm</name><memory>65536</memory><os><type arch='x86_64'>hvm</type></os>
    <test:runstate>5</test:runstate>
  </domain>
</node>`

func testDriverURI(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "node.xml")
	if err := os.WriteFile(path, []byte(testNode), 0o600); err != nil {
		t.Fatal(err)
	}
	return "test://" + path
}

func TestConnDetectsEachDomainTypeThroughLibvirt(t *testing.T) {
	c := New(testDriverURI(t), 5*time.Second, Handlers{})
	t.Cleanup(c.Close)

	for name, want := range map[string]hypervisor.Type{
		"default_kvm-vm":  hypervisor.KVM,
		"default_tcg-vm":  hypervisor.QEMUTCG,
		"other_mshv-vm":   hypervisor.MSHV,
		"default_test-vm": hypervisor.Unknown,
	} {
		xml, err := c.DomainXML(context.Background(), name)
		if err != nil {
			t.Fatalf("DomainXML(%s): %v", name, err)
		}
		got, err := hypervisor.Detect(xml)
		if err != nil {
			t.Fatalf("Detect(%s): %v", name, err)
		}
		if got.Type != want {
			t.Errorf("%s: got %q, want %q", name, got.Type, want)
		}
	}
}

func TestConnReportsMissingAndStoppedDomainsAsNotFound(t *testing.T) {
	c := New(testDriverURI(t), 5*time.Second, Handlers{})
	t.Cleanup(c.Close)

	for _, name := range []string{"default_no-such-vm", "default_stopped-vm"} {
		_, err := c.DomainXML(context.Background(), name)
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("DomainXML(%s) = %v, want ErrNotFound", name, err)
		}
	}
}

func TestConnReportsUnreachableLibvirt(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "no-daemon-sock")
	c := New("qemu+unix:///session?socket="+sock, 5*time.Second, Handlers{})
	t.Cleanup(c.Close)

	_, err := c.DomainXML(context.Background(), "default_my-vm")
	if err == nil || errors.Is(err, ErrNotFound) {
		t.Fatalf("DomainXML on a dead socket = %v, want a connection error", err)
	}
}
