package vmi

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.uber.org/zap"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/faultlog"
)

// FailureReason says why a request of the VMI watch failed.
type FailureReason string

// The reasons a list or watch of VMIs fails.
const (
	// ReasonUnreachable: no answer from the API server (connection refused, DNS, TLS,
	// timeout), or one saying it cannot serve now (429, 5xx).
	ReasonUnreachable FailureReason = "unreachable"
	// ReasonUnauthorized: 401, the credentials were rejected.
	ReasonUnauthorized FailureReason = "unauthorized"
	// ReasonForbidden: 403, RBAC does not allow listing or watching VMIs.
	ReasonForbidden FailureReason = "forbidden"
	// ReasonCRDMissing: 404, the API server does not serve kubevirt.io/v1 VMIs.
	ReasonCRDMissing FailureReason = "crd_missing"
	// ReasonOther: any other answer.
	ReasonOther FailureReason = "other"
)

// hints say, for each reason, what the user should check.
var hints = map[FailureReason]string{
	ReasonUnreachable: "check that the API server in the error is the cluster's and is up and reachable from this node " +
		"(auth_type serviceAccount: KUBERNETES_SERVICE_HOST; kubeConfig: the cluster's server in KUBECONFIG)",
	ReasonUnauthorized: "the API server rejected the collector's credentials: check the service account token " +
		"(auth_type serviceAccount) or the user in KUBECONFIG (auth_type kubeConfig)",
	ReasonForbidden: "the collector may not list and watch virtualmachineinstances.kubevirt.io: apply the ClusterRole " +
		"and ClusterRoleBinding of deploy/kubernetes/rbac.yaml and check with `kubectl auth can-i watch " +
		"virtualmachineinstances.kubevirt.io --as=system:serviceaccount:otelcol-kubevirt:otelcol-kubevirt`",
	ReasonCRDMissing: "the API server does not serve virtualmachineinstances.kubevirt.io/v1: is KubeVirt installed? " +
		"(`kubectl get crd virtualmachineinstances.kubevirt.io`)",
	ReasonOther: "see the error",
}

// classify tells why a request to the API server failed.
func classify(err error) FailureReason {
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return ReasonUnreachable // no HTTP answer at all
	}
	switch code := status.Status().Code; {
	case code == 401:
		return ReasonUnauthorized
	case code == 403:
		return ReasonForbidden
	case code == 404:
		return ReasonCRDMissing
	case code == 429 || code >= 500:
		return ReasonUnreachable
	default:
		return ReasonOther
	}
}

// Health is the state of the VMI watch, as the receiver reports it.
type Health struct {
	// Synced is true while the watch follows the API server: the first list is done,
	// the last request succeeded, and a watch is open, or the reflector has asked for
	// a list or a watch since it let go of the last one, or did so less than watchGap
	// ago (see watchGap).
	Synced bool
	// Staleness is 0 while Synced; otherwise how long since the watch last worked, or
	// since Start if it never did.
	Staleness time.Duration
	// Failures counts the failed lists and watches since Start, by reason.
	Failures map[FailureReason]int64
}

// health follows the outcome of every request the informer makes. The informer's own
// error handler is not enough: client-go's reflector retries "connection refused" and
// 429 inside its loops (logging them at klog verbosity 2 and 4 only) and never hands
// them to the handler, so an API server that is down from the start, or goes down
// after the first list, would go unnoticed there.
type health struct {
	log      *zap.Logger
	faults   *faultlog.Tracker
	selector string
	synced   func() bool // the informer's HasSynced
	changed  func()      // told of every failure and every change of Synced
	now      func() time.Time

	mu        sync.Mutex
	watching  bool      // the last list or watch succeeded, and a watch has opened since
	closedAt  time.Time // while watching: when the reflector let go of the last watch, until another opens
	asking    bool      // the reflector asked for a list or watch since closedAt
	goodUntil time.Time // when the watch last worked (Start, before it ever did)
	lastErr   error     // the last failed request's error, to tell it apart in onError
	failures  map[FailureReason]int64
}

// faultInterval is how often a lasting outage of the watch is logged again.
const faultInterval = time.Minute

// watchGap is how long the reflector may hold no watch and ask for none, without a
// failed request, and still count as working. It asks for the next watch at once when
// the API server merely ended one (its timeout, every 5 to 10 minutes), but after an
// expired watch (410 Gone, as after an API server restart) or a watch that closed at
// once it waits its backoff, up to a minute, before asking again: no request fails
// meanwhile, and nothing is followed either. A request in flight counts as asking:
// the response to a watch may only arrive with its first event (behind a proxy that
// holds headers back), and one that never comes is client-go's to time out.
const watchGap = time.Second

func newHealth(logger *zap.Logger, selector string, changed func()) *health {
	return &health{
		log:      logger,
		faults:   faultlog.New(logger, faultInterval),
		selector: selector,
		changed:  changed,
		now:      time.Now,
		failures: map[FailureReason]int64{},
	}
}

// started marks the beginning of the watch: staleness counts from here until it works.
func (h *health) started() {
	h.mu.Lock()
	h.goodUntil = h.now()
	h.mu.Unlock()
}

// listed records the outcome of a list request.
func (h *health) listed(ctx context.Context, err error) {
	if err != nil {
		h.failed(ctx, err)
	}
	// A successful list alone does not end an outage: without a watch the cache does
	// not follow (RBAC may allow list but not watch), and calling that a recovery would
	// make the log flap with every retry.
}

// watched records the outcome of a watch request: an open watch is a working one.
func (h *health) watched(ctx context.Context, err error) {
	if err != nil {
		h.failed(ctx, err)
		return
	}
	h.mu.Lock()
	was := h.working()
	h.watching, h.closedAt = true, time.Time{}
	h.mu.Unlock()
	if !was {
		h.faults.Recover("watch", "Watching VirtualMachineInstances again", zap.String("label_selector", h.selector))
		h.changed()
	}
}

// requesting records that the reflector asks for a list or a watch: it is no longer
// between two watches.
func (h *health) requesting() {
	h.mu.Lock()
	was := h.working()
	h.asking = true
	is := h.working()
	h.mu.Unlock()
	if is != was {
		h.changed()
	}
}

// closed records that the reflector let go of a watch: its stream ended, it expired,
// or the informer stops. The watch stops working unless the reflector asks for a list
// or a watch within watchGap.
func (h *health) closed() {
	h.mu.Lock()
	if h.watching && h.closedAt.IsZero() {
		h.closedAt = h.now()
	}
	h.asking = false
	h.mu.Unlock()
	// Nothing else happens at watchGap when no other watch opens.
	time.AfterFunc(watchGap, h.changed)
}

// working says whether the watch follows the API server, as far as requests tell.
// h.mu must be held.
func (h *health) working() bool {
	return h.watching && (h.closedAt.IsZero() || h.asking || h.now().Sub(h.closedAt) < watchGap)
}

// failed records a failed request. A request that failed because the watch is
// stopping is no failure.
func (h *health) failed(ctx context.Context, err error) {
	if ctx.Err() != nil {
		return
	}
	reason := classify(err)
	synced := h.synced()
	h.mu.Lock()
	switch {
	case h.watching && synced && !h.closedAt.IsZero():
		h.goodUntil = h.closedAt // it followed until its last watch closed
	case h.watching && synced:
		h.goodUntil = h.now() // it worked until this request
	}
	h.watching, h.closedAt = false, time.Time{}
	h.lastErr = err
	h.failures[reason]++
	h.mu.Unlock()
	h.faults.Fail("watch", string(reason), "Watching VirtualMachineInstances failed; retrying",
		zap.String("reason", string(reason)), zap.String("hint", hints[reason]),
		zap.String("label_selector", h.selector), zap.Error(err))
	h.changed()
}

// onError is the informer's watch error handler. It sees the errors that end a round
// of list and watch; those from a request were recorded already, the others (a watch
// stream that broke off with an error) are recorded here.
func (h *health) onError(ctx context.Context, err error) {
	h.mu.Lock()
	seen := h.lastErr != nil && errors.Is(err, h.lastErr)
	h.mu.Unlock()
	if seen {
		h.log.Debug("VMI watch retrying", zap.Error(err))
		return
	}
	h.failed(ctx, err)
}

// becameSynced is called once the first list has been read into the cache.
func (h *health) becameSynced() { h.changed() }

// snapshot returns the current Health.
func (h *health) snapshot() Health {
	synced := h.synced()
	h.mu.Lock()
	defer h.mu.Unlock()
	out := Health{Synced: synced && h.working(), Failures: make(map[FailureReason]int64, len(h.failures))}
	switch {
	case out.Synced:
	case synced && h.watching: // no watch nor request for longer than watchGap, none failed
		out.Staleness = h.now().Sub(h.closedAt)
	default:
		out.Staleness = h.now().Sub(h.goodUntil)
	}
	for r, n := range h.failures {
		out.Failures[r] = n
	}
	return out
}
