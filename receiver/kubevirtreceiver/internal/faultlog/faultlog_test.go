package faultlog

import (
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// clock is a hand-driven time source.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }
func newTracker(every time.Duration) (*Tracker, *observer.ObservedLogs, *clock) {
	core, logs := observer.New(zapcore.DebugLevel)
	c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	tr := New(zap.New(core), every)
	tr.now = c.now
	return tr, logs, c
}

// lines returns the messages logged since the last call, with their level.
func lines(logs *observer.ObservedLogs) []observer.LoggedEntry {
	return logs.TakeAll()
}

func TestOutageIsLoggedAtStartEveryIntervalAndAtTheEnd(t *testing.T) {
	tr, logs, c := newTracker(time.Minute)

	tr.Fail("watch", "unreachable", "failed", zap.String("error", "connection refused"))
	got := lines(logs)
	if len(got) != 1 || got[0].Level != zapcore.WarnLevel || got[0].Message != "failed" {
		t.Fatalf("first failure logged as %+v, want one warning", got)
	}
	if _, ok := got[0].ContextMap()["failing_for"]; ok {
		t.Errorf("the first line has failing_for: %v", got[0].ContextMap())
	}

	// A backing-off retry loop: many failures inside the interval, none logged.
	for range 5 {
		c.advance(10 * time.Second)
		tr.Fail("watch", "unreachable", "failed")
	}
	if got := lines(logs); len(got) != 0 {
		t.Fatalf("repeats within the interval logged: %+v", got)
	}

	// Once the interval has passed: a reminder saying what was left out.
	c.advance(10 * time.Second)
	tr.Fail("watch", "unreachable", "failed")
	got = lines(logs)
	if len(got) != 1 {
		t.Fatalf("after the interval: %+v, want one reminder", got)
	}
	ctx := got[0].ContextMap()
	if ctx["failures_not_logged"] != int64(5) || ctx["failing_for"] != time.Minute {
		t.Errorf("reminder fields = %v, want failures_not_logged 5, failing_for 1m", ctx)
	}

	// A different cause is news: logged at once.
	c.advance(time.Second)
	tr.Fail("watch", "forbidden", "failed")
	if got := lines(logs); len(got) != 1 || got[0].ContextMap()["failures_not_logged"] != int64(0) {
		t.Fatalf("a new cause: %+v, want one line", got)
	}

	c.advance(4 * time.Second)
	tr.Recover("watch", "works again")
	got = lines(logs)
	if len(got) != 1 || got[0].Level != zapcore.InfoLevel || got[0].Message != "works again" {
		t.Fatalf("recovery logged as %+v, want one info line", got)
	}
	if ctx := got[0].ContextMap(); ctx["outage"] != 65*time.Second || ctx["failures"] != int64(8) {
		t.Errorf("recovery fields = %v, want outage 1m5s, failures 8", ctx)
	}

	// Recovering again, or a subject that never failed, says nothing.
	tr.Recover("watch", "works again")
	tr.Recover("other", "works again")
	if got := lines(logs); len(got) != 0 {
		t.Fatalf("recovery without an outage logged: %+v", got)
	}

	// A new outage is logged at once, even within the interval of the last line.
	c.advance(time.Second)
	tr.Fail("watch", "forbidden", "failed")
	if got := lines(logs); len(got) != 1 {
		t.Fatalf("a new outage: %+v, want one line", got)
	}
}

func TestOutageOfSeveralSubjectsEndsWithTheLast(t *testing.T) {
	tr, logs, c := newTracker(time.Minute)
	for _, vmi := range []string{"ns/a", "ns/b", "ns/c"} {
		tr.Fail(vmi, "libvirt_unreachable", "failed", zap.String("vmi", vmi))
	}
	if got := lines(logs); len(got) != 1 || got[0].ContextMap()["vmi"] != "ns/a" {
		t.Fatalf("three subjects failing at once: %+v, want the first only", got)
	}
	c.advance(time.Second)
	tr.Recover("ns/a", "works again")
	tr.Recover("ns/c", "works again")
	if got := lines(logs); len(got) != 0 {
		t.Fatalf("recovery logged while ns/b still fails: %+v", got)
	}
	tr.Recover("ns/b", "works again")
	if got := lines(logs); len(got) != 1 || got[0].ContextMap()["failures"] != int64(3) {
		t.Fatalf("last subject recovered: %+v, want one line counting 3 failures", got)
	}
}
