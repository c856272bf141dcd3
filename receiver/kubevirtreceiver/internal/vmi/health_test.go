package vmi

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

func TestClassifyNamesWhatToFix(t *testing.T) {
	vmis := schema.GroupResource{Group: "kubevirt.io", Resource: "virtualmachineinstances"}
	tests := []struct {
		err  error
		want FailureReason
	}{
		{&url.Error{Op: "Get", URL: "https://127.0.0.1:1/apis", Err: syscall.ECONNREFUSED}, ReasonUnreachable},
		{apierrors.NewUnauthorized("bad token"), ReasonUnauthorized},
		{apierrors.NewForbidden(vmis, "", errors.New("RBAC")), ReasonForbidden},
		{apierrors.NewNotFound(vmis, ""), ReasonCRDMissing},
		{apierrors.NewTooManyRequests("slow down", 1), ReasonUnreachable},
		{apierrors.NewServiceUnavailable("etcd"), ReasonUnreachable},
		{apierrors.NewGenericServerResponse(502, "get", vmis, "", "bad gateway", 0, false), ReasonUnreachable},
		{apierrors.NewBadRequest("no"), ReasonOther},
		// As the reflector hands them on.
		{fmt.Errorf("failed to list %s: %w", vmis, apierrors.NewForbidden(vmis, "", errors.New("RBAC"))), ReasonForbidden},
	}
	for _, tt := range tests {
		if got := classify(tt.err); got != tt.want {
			t.Errorf("classify(%v) = %s, want %s", tt.err, got, tt.want)
		}
		if hints[tt.want] == "" {
			t.Errorf("no hint for %s", tt.want)
		}
	}
}

// TestHealthFollowsRequests drives health as the informer does, on a hand-driven clock.
func TestHealthFollowsRequests(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	var changes atomic.Int64
	h := newHealth(zap.New(core), "kubevirt.io/nodeName=n", func() { changes.Add(1) })
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	h.now = func() time.Time { return now }
	synced := false
	h.synced = func() bool { return synced }
	ctx := context.Background()
	refused := &url.Error{Op: "Get", URL: "https://127.0.0.1:1/apis", Err: syscall.ECONNREFUSED}

	h.started()
	now = now.Add(3 * time.Second)
	h.watched(ctx, refused)
	h.listed(ctx, refused)
	got := h.snapshot()
	if got.Synced || got.Staleness != 3*time.Second || got.Failures[ReasonUnreachable] != 2 {
		t.Fatalf("after two refused requests: %+v, want not synced, stale 3s, 2 unreachable", got)
	}
	if n := logs.FilterMessage("Watching VirtualMachineInstances failed; retrying").Len(); n != 1 {
		t.Fatalf("%d failure lines, want 1", n)
	}

	// The reflector hands the list's error to the error handler too: counted once.
	h.onError(ctx, fmt.Errorf("failed to list: %w", refused))
	if n := h.snapshot().Failures[ReasonUnreachable]; n != 2 {
		t.Fatalf("the handler's copy of a request error counted again: %d failures", n)
	}

	// A successful list alone is no recovery; an open watch after it, synced, is.
	now = now.Add(time.Second)
	h.listed(ctx, nil)
	if logs.FilterMessage("Watching VirtualMachineInstances again").Len() != 0 || h.snapshot().Synced {
		t.Fatal("a list without a watch ended the outage")
	}
	synced = true
	h.watched(ctx, nil)
	got = h.snapshot()
	if !got.Synced || got.Staleness != 0 {
		t.Fatalf("after the watch opened: %+v, want synced, not stale", got)
	}
	if logs.FilterMessage("Watching VirtualMachineInstances again").Len() != 1 {
		t.Fatal("recovery not logged")
	}

	// Later the stream breaks off with an error no request saw: staleness counts from
	// then, not from the start.
	now = now.Add(time.Hour)
	h.onError(ctx, errors.New("very short watch"))
	now = now.Add(2 * time.Second)
	if got := h.snapshot(); got.Synced || got.Staleness != 2*time.Second || got.Failures[ReasonUnreachable] != 3 {
		t.Fatalf("after the stream broke: %+v, want not synced, stale 2s, 3 unreachable", got)
	}

	// Requests cut short by the watch stopping are no failure.
	stopped, cancel := context.WithCancel(ctx)
	cancel()
	h.watched(stopped, context.Canceled)
	if n := h.snapshot().Failures[ReasonOther] + h.snapshot().Failures[ReasonUnreachable]; n != 3 {
		t.Fatalf("a request of a stopping watch was counted: %d failures", n)
	}
	if changes.Load() == 0 {
		t.Error("HealthChanged never called")
	}
}

// TestHealthBetweenWatches: the reflector lets go of a watch and opens the next at once
// when the API server ended it, but waits its backoff before listing again after an
// expired one, while no request fails. Only a gap longer than watchGap is an outage.
func TestHealthBetweenWatches(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	var changes atomic.Int64
	h := newHealth(zap.New(core), "kubevirt.io/nodeName=n", func() { changes.Add(1) })
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	h.now = func() time.Time { return now }
	h.synced = func() bool { return true }
	ctx := context.Background()

	h.started()
	h.watched(ctx, nil)
	now = now.Add(time.Hour)
	h.closed() // the API server's timeout
	now = now.Add(watchGap / 2)
	if got := h.snapshot(); !got.Synced {
		t.Fatalf("%v after a watch closed: %+v, want still synced", watchGap/2, got)
	}
	h.requesting()
	now = now.Add(2 * watchGap) // a response that waits for its first event
	if got := h.snapshot(); !got.Synced {
		t.Fatalf("with the next watch requested: %+v, want synced", got)
	}
	h.watched(ctx, nil)
	now = now.Add(2 * watchGap)
	if got := h.snapshot(); !got.Synced {
		t.Fatalf("with the next watch open: %+v, want synced", got)
	}

	h.closed() // expired: the reflector backs off before listing again
	now = now.Add(3 * watchGap)
	if got := h.snapshot(); got.Synced || got.Staleness != 3*watchGap {
		t.Fatalf("%v after a watch closed with none opened since: %+v, want not synced, stale %v", 3*watchGap, got, 3*watchGap)
	}
	before := changes.Load()
	h.requesting()
	if changes.Load() == before {
		t.Fatal("the relist that ends the gap was not told as a change of Synced")
	}
	h.listed(ctx, nil)
	h.requesting()
	h.watched(ctx, nil)
	if got := h.snapshot(); !got.Synced || got.Staleness != 0 {
		t.Fatalf("after the list and the next watch: %+v, want synced", got)
	}
	if n := len(logs.All()); n != 0 {
		t.Fatalf("logged %d lines, want none: no request failed", n)
	}

	// A request failing after the gap: staleness still counts from the close.
	h.closed()
	now = now.Add(5 * watchGap)
	h.requesting()
	h.listed(ctx, &url.Error{Op: "Get", URL: "https://127.0.0.1:1/apis", Err: syscall.ECONNREFUSED})
	if got := h.snapshot(); got.Synced || got.Staleness != 5*watchGap {
		t.Fatalf("a failed list after the gap: %+v, want stale %v, since the watch closed", got, 5*watchGap)
	}
}
