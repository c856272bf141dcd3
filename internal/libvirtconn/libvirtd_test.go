package libvirtconn

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
func TestConnDetectsRealGuestsOnALauncherLikeLibvirtd(t *testing.T) {
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

	c := New(lv.URI(), 5*time.Second, Handlers{})
	t.Cleanup(c.Close)
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

// TestClientHearsGuestsStartAndReconnectsAfterLibvirtdRestarts covers the two things a
// long-lived client must notice by itself: a domain that starts (so that a VMI waiting
// for it is detected at once) and a libvirtd that went away and came back.
func TestConnHearsGuestsStartAndReconnectsAfterLibvirtdRestarts(t *testing.T) {
	lv := testenv.MustStartLibvirtd(t, testenv.LibvirtdOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	started := make(chan string, 10)
	connected := make(chan struct{}, 10)
	c := New(lv.URI(), 5*time.Second, Handlers{
		DomainStarted: func(name string) { started <- name },
		Connected:     func() { connected <- struct{}{} },
	})
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { c.Run(runCtx); close(done) }()
	t.Cleanup(func() { stop(); <-done; c.Close() })

	receive(ctx, t, connected, "first connection")
	if err := lv.StartGuest(ctx, "default_late-vm", "qemu"); err != nil {
		t.Fatal(err)
	}
	if got := receive(ctx, t, started, "started event"); got != "default_late-vm" {
		t.Errorf("started event for %q", got)
	}

	if err := lv.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	receive(ctx, t, connected, "reconnection after libvirtd restart")
	if _, err := c.DomainXML(ctx, "default_late-vm"); err != nil && !errors.Is(err, ErrNotFound) {
		t.Errorf("after reconnecting: %v", err)
	}
}

func receive[T any](ctx context.Context, t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-ctx.Done():
		t.Fatalf("no %s", what)
		var zero T
		return zero
	}
}
