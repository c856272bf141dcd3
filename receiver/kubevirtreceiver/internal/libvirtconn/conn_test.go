package libvirtconn

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/hypervisor"
)

func TestConnDetectsEachDomainTypeThroughLibvirt(t *testing.T) {
	c := New(testenv.TestDriverURI(t), 5*time.Second, Handlers{})
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
	c := New(testenv.TestDriverURI(t), 5*time.Second, Handlers{})
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

// TestReconnectBackoff: the delays between attempts to reach a lost libvirt start at
// 100 ms, double, and stay at 2 s once there, however long the outage (a Steps too
// small would freeze them early, a Cap missing would let them grow without bound).
func TestReconnectBackoff(t *testing.T) {
	next := reconnectBackoff.DelayFunc()
	want := []time.Duration{100, 200, 400, 800, 1600, 2000, 2000}
	for i, w := range want {
		if got := next(); got != w*time.Millisecond {
			t.Fatalf("delay %d = %v, want %v", i, got, w*time.Millisecond)
		}
	}
	for i := range 1000 {
		if got := next(); got != 2*time.Second {
			t.Fatalf("delay %d = %v, want 2s", len(want)+i, got)
		}
	}
}
