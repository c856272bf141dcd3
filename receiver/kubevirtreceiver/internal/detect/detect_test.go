package detect

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/hypervisor"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/vmi"
)

func TestURIReaderReadsEachVMIsDomainByItsName(t *testing.T) {
	uri := testenv.TestDriverURI(t)
	r := NewURIReader(uri, 5*time.Second, Handlers{})
	t.Cleanup(r.Close)
	ctx := context.Background()

	for key, want := range map[string]hypervisor.Type{
		"default/kvm-vm":  hypervisor.KVM,
		"default/tcg-vm":  hypervisor.QEMUTCG,
		"other/mshv-vm":   hypervisor.MSHV,
		"default/test-vm": hypervisor.Unknown,
	} {
		ns, name := vmi.SplitKey(key)
		res, err := r.Read(ctx, &vmi.VMI{Namespace: ns, Name: name})
		if err != nil || res.Type != want {
			t.Errorf("%s: Read = %+v, %v; want %s", key, res.Detection, err, want)
		}
		if res.From != uri || res.XML == "" {
			t.Errorf("%s: read %d bytes from %q", key, len(res.XML), res.From)
		}
	}
	for _, name := range []string{"no-such-vm", "stopped-vm"} {
		if _, err := r.Read(ctx, &vmi.VMI{Namespace: "default", Name: name}); !errors.Is(err, ErrNotFound) {
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
