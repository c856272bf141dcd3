// Package faultlog logs a persistent failure the way someone reading the log needs it:
// its start at once, a reminder at most once per interval while it lasts (saying how
// many failures went unlogged meanwhile), and its end once.
//
// A failure is reported per subject (one VMI, or the one VMI watch); the outage lasts
// while any subject's last attempt failed. Callers report every attempt; faultlog
// decides what reaches the log. It keeps no metrics and retries nothing.
package faultlog

import (
	"sync"
	"time"

	"go.uber.org/zap"
)

// Tracker follows one kind of failure, e.g. "the VMI watch" or "libvirt unreachable".
// It is safe for concurrent use.
type Tracker struct {
	logger *zap.Logger
	every  time.Duration
	now    func() time.Time

	mu       sync.Mutex
	failing  map[string]struct{} // subjects whose last attempt failed
	since    time.Time           // start of the current outage
	cause    string              // of the last line logged in this outage
	lastLine time.Time
	unlogged int // failures since the last line
	total    int // failures in this outage
}

// New returns a Tracker that logs to logger and repeats itself at most every interval.
func New(logger *zap.Logger, every time.Duration) *Tracker {
	// Lines name the caller of Fail and Recover as their source, not this package.
	logger = logger.WithOptions(zap.AddCallerSkip(1))
	return &Tracker{logger: logger, every: every, now: time.Now, failing: map[string]struct{}{}}
}

// Fail records a failed attempt of subject. cause is a short, stable word for why (the
// reason a metric counts it under). msg and fields are logged at Warn when this
// failure starts an outage, when its cause differs from that of the last line, or when
// the interval has passed since the last line; otherwise the failure is only counted.
// Logged lines after the first say how long the outage has lasted and how many
// failures were not logged since the previous line.
func (t *Tracker) Fail(subject, cause, msg string, fields ...zap.Field) {
	t.mu.Lock()
	now := t.now()
	starts := len(t.failing) == 0
	t.failing[subject] = struct{}{}
	t.total++
	if starts {
		t.since, t.total = now, 1
	}
	if !starts && cause == t.cause && now.Sub(t.lastLine) < t.every {
		t.unlogged++
		t.mu.Unlock()
		return
	}
	if !starts {
		fields = append(fields, zap.Duration("failing_for", now.Sub(t.since).Round(time.Millisecond)),
			zap.Int("failures_not_logged", t.unlogged))
	}
	t.cause, t.lastLine, t.unlogged = cause, now, 0
	t.mu.Unlock()
	t.logger.Warn(msg, fields...)
}

// Recover records that subject works again, or no longer matters (it is gone). When it
// was the last failing subject, the outage ends: msg and fields are logged at Info,
// with how long it lasted and how many failures it saw.
func (t *Tracker) Recover(subject, msg string, fields ...zap.Field) {
	t.mu.Lock()
	if _, ok := t.failing[subject]; !ok {
		t.mu.Unlock()
		return
	}
	delete(t.failing, subject)
	if len(t.failing) > 0 {
		t.mu.Unlock()
		return
	}
	fields = append(fields, zap.Duration("outage", t.now().Sub(t.since).Round(time.Millisecond)), zap.Int("failures", t.total))
	t.cause, t.unlogged, t.total = "", 0, 0
	t.mu.Unlock()
	t.logger.Info(msg, fields...)
}
