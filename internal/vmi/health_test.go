package vmi

import (
	"context"
	"errors"
	"fmt"
	"net/url"
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
	changes := 0
	h := newHealth(zap.New(core), "kubevirt.io/nodeName=n", func() { changes++ })
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
	if changes == 0 {
		t.Error("HealthChanged never called")
	}
}
