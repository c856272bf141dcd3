package domain

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/hypervisor"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv"
)

// TestClientDetectsRealGuestsOnALauncherLikeLibvirtd talks to a real libvirtd in
// session mode, as an unprivileged user with a private socket (the way a KubeVirt
// launcher runs it), running real QEMU guests.
func TestClientDetectsRealGuestsOnALauncherLikeLibvirtd(t *testing.T) {
	lv := testenv.MustStartLibvirtd(t, testenv.LibvirtdOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	want := map[string]hypervisor.Type{"default_tcg-vm": hypervisor.QEMUTCG}
	if ok, why := lv.KVMUsable(); ok {
		want["default_kvm-vm"] = hypervisor.KVM
	} else {
		t.Logf("no KVM guest: %s", why)
	}
	for name, typ := range want {
		domainType := map[hypervisor.Type]string{hypervisor.KVM: "kvm", hypervisor.QEMUTCG: "qemu"}[typ]
		if err := lv.StartGuest(ctx, name, domainType); err != nil {
			t.Fatal(err)
		}
	}

	c := NewClient(lv.URI(), 5*time.Second)
	t.Cleanup(func() { _ = c.Close() })
	for name, typ := range want {
		xml, err := c.DomainXML(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		got, err := hypervisor.Detect(xml)
		if err != nil || got.Type != typ {
			t.Errorf("%s: Detect = %v, %v; want %s", name, got, err, typ)
		}
	}

	if _, err := c.DomainXML(ctx, "default_not-started"); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing domain: %v, want ErrNotFound", err)
	}
	if err := lv.DestroyGuest("default_tcg-vm"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DomainXML(ctx, "default_tcg-vm"); !errors.Is(err, ErrNotFound) {
		t.Errorf("destroyed domain: %v, want ErrNotFound", err)
	}
}
