package libvirtconn

import (
	"context"
	"errors"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/hypervisor"
)

// TestConnDetectsRealGuestsOnALauncherLikeLibvirtd talks to a real libvirtd in
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

// TestConnHearsGuestsStartAndReconnectsAfterLibvirtdRestarts covers the two things a
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

// TestConnGivesUpOnAHungLibvirtd: a libvirtd that stops answering (SIGSTOP) costs a
// read its timeout, not more; the read that overran ends once libvirtd answers again
// and hands its late result to no one (under -race this failed: it wrote the result
// the caller had already returned); the next reads work.
func TestConnGivesUpOnAHungLibvirtd(t *testing.T) {
	lv := testenv.MustStartLibvirtd(t, testenv.LibvirtdOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := lv.StartGuest(ctx, "default_hung-vm", "qemu"); err != nil {
		t.Fatal(err)
	}
	const timeout = 300 * time.Millisecond
	c := New(lv.URI(), timeout, Handlers{})
	t.Cleanup(c.Close)
	if _, err := c.DomainXML(ctx, "default_hung-vm"); err != nil {
		t.Fatalf("before the hang: %v", err)
	}

	pid := lv.PID()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	resume := func() {
		if stopped {
			stopped = false
			if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
				t.Error(err)
			}
		}
	}
	defer resume()
	// The goroutines from here on are the hung read's; goleak tells them by their stacks.
	before := goleak.IgnoreCurrent()
	begin := time.Now()
	xml, err := c.DomainXML(ctx, "default_hung-vm")
	took := time.Since(begin)
	if !errors.Is(err, context.DeadlineExceeded) || xml != "" {
		t.Errorf("from a stopped libvirtd: %q, %v; want no XML and a deadline error", xml, err)
	}
	// The read's own timeout ended it, not the test's context (which has minutes left).
	if took < timeout || ctx.Err() != nil {
		t.Errorf("the read took %v (test context: %v); want it ended by its timeout, %v", took, ctx.Err(), timeout)
	}

	resume()
	// The overrun read completes now, in the background, and its goroutine ends. Its
	// end is awaited without a libvirt call: one would order the test's read of the
	// result before the late write, and hide from -race the race this test is for.
	var leaked error
	ended, cancelEnded := context.WithTimeout(ctx, 10*time.Second)
	defer cancelEnded()
	err = wait.PollUntilContextCancel(ended, 10*time.Millisecond, true, func(context.Context) (bool, error) {
		leaked = goleak.Find(before, goleak.IgnoreAnyFunction(EventLoopFunction))
		return leaked == nil, nil
	})
	if err != nil {
		t.Fatalf("the overrun read's goroutine did not end after libvirtd resumed: %v", leaked)
	}
	err = wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, func(context.Context) (bool, error) {
		xml, err := c.DomainXML(ctx, "default_hung-vm")
		return err == nil && xml != "", nil
	})
	if err != nil {
		t.Fatalf("no XML after libvirtd resumed: %v", err)
	}
}
