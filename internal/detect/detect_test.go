package detect

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/hypervisor"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/vmi"
)

// testNode is a node for libvirt's in-process test driver: a domain of each type the
// receiver knows, one it does not, and one defined but shut off.
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

func TestURIReaderReadsEachVMIsDomainByItsName(t *testing.T) {
	path := filepath.Join(t.TempDir(), "node.xml")
	if err := os.WriteFile(path, []byte(testNode), 0o600); err != nil {
		t.Fatal(err)
	}
	r := NewURIReader("test://"+path, 5*time.Second, Handlers{})
	t.Cleanup(r.Close)
	ctx := context.Background()

	for key, want := range map[string]hypervisor.Type{
		"default/kvm-vm":  hypervisor.KVM,
		"default/tcg-vm":  hypervisor.QEMUTCG,
		"other/mshv-vm":   hypervisor.MSHV,
		"default/test-vm": hypervisor.Unknown,
	} {
		ns, name := vmi.SplitKey(key)
		res, conn, err := r.Detect(ctx, &vmi.VMI{Namespace: ns, Name: name}, nil)
		if err != nil || res.Type != want || conn != nil {
			t.Errorf("%s: Detect = %+v, %v, %v; want %s and no launcher connection", key, res.Detection, conn, err, want)
		}
		if res.From != "test://"+path || res.XML == "" {
			t.Errorf("%s: read %d bytes from %q", key, len(res.XML), res.From)
		}
	}
	for _, name := range []string{"no-such-vm", "stopped-vm"} {
		if _, _, err := r.Detect(ctx, &vmi.VMI{Namespace: "default", Name: name}, nil); !errors.Is(err, ErrNotFound) {
			t.Errorf("default/%s: err = %v, want ErrNotFound", name, err)
		}
	}
}

func TestParseTellsInvalidXMLApart(t *testing.T) {
	if _, err := parse("<domain type='kvm'>truncat", "here"); !errors.Is(err, ErrInvalidXML) {
		t.Errorf("parse(truncated) = %v, want ErrInvalidXML", err)
	}
	res, err := parse("<domain type='xen'><name>x</name></domain>", "here")
	if err != nil || res.Type != hypervisor.Unknown || res.DomainType != "xen" || res.From != "here" {
		t.Errorf("parse(xen) = %+v, %v; want unknown from here, domain type xen", res, err)
	}
}
