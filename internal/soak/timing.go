package soak

import (
	"context"
	"maps"
	"time"
)

// Convergence is timed from the operation that altered what an endpoint must show, not
// from the end of its burst: an action goes on after it (a launcher pod deleted after
// its VMI stopped takes a second and alters nothing), and so may the burst. From that
// operation on, a probe scrapes the endpoints in the background until they show it.

// step follows every operation on the real parts, with the model in line: if what the
// endpoints must show changed, the collectors' time to show it starts now (or, while
// they are cut off from the API server, when they are back).
func (s *soak) step() {
	s.world.Observe()
	want := s.expectations()
	if want != nil && sameExpectations(want, s.want) {
		return
	}
	s.want = want
	if !s.cutOff {
		s.changed()
	}
}

// reconnected ends an outage of the API server: the collectors' watches must come back,
// and what changed meanwhile must show.
func (s *soak) reconnected() {
	s.cutOff = false
	s.changed()
}

// changed starts timing from now against s.want.
func (s *soak) changed() {
	s.changedAt = time.Now()
	s.finishProbe(time.Time{}) // a new change: the old probe's question is moot
	if s.want == nil {
		return // the oracle cannot tell; the quiet point says why
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &probe{cancel: cancel, done: make(chan struct{}), unsynced: map[string]int{}}
	s.probe = p
	want, canaries := s.want, s.canaries
	go func() {
		defer close(p.done)
		tick := time.NewTicker(convergePoll)
		defer tick.Stop()
		for {
			// Errors are the quiet point's to report.
			if got, err := s.scrapeAll(ctx); err == nil {
				now := time.Now()
				diffs := compare(want, got)
				for _, node := range Nodes {
					if !got[node].synced {
						p.unsynced[node]++
					}
				}
				if canaries != nil {
					canaries.observe(now, got)
				}
				if len(diffs) == 0 {
					p.matched = now
					return
				}
				p.lastDiff = diffs
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
}

// probe is a background scrape for the endpoints to show what they must.
type probe struct {
	cancel context.CancelFunc
	done   chan struct{}
	// matched is when they first did; zero if not yet. lastDiff is how they differed at
	// the scrape before. Both are read after done.
	matched  time.Time
	lastDiff map[string]string
	// unsynced counts, by node, the scrapes that showed its watch not synced.
	unsynced map[string]int
}

// finishProbe waits until the probe, if any, saw the endpoints show what they must, or
// until deadline, stops it and returns it (nil if there was none).
func (s *soak) finishProbe(deadline time.Time) *probe {
	p := s.probe
	if p == nil {
		return nil
	}
	s.probe = nil
	select {
	case <-p.done:
	case <-time.After(time.Until(deadline)):
	}
	p.cancel()
	<-p.done
	if len(p.unsynced) > 0 && s.opts.Verbose {
		s.logf("  scrapes that showed a watch not synced, by node: %v", p.unsynced)
	}
	return p
}

// expectations is what every endpoint must show; nil when the oracle cannot tell
// (which the quiet point reports).
func (s *soak) expectations() map[string]map[Series]bool {
	want := make(map[string]map[Series]bool, len(Nodes))
	for _, node := range Nodes {
		w, err := s.world.Expected(node)
		if err != nil {
			return nil
		}
		want[node] = w
	}
	return want
}

func sameExpectations(a, b map[string]map[Series]bool) bool {
	if a == nil || b == nil {
		return false
	}
	for _, node := range Nodes {
		if !maps.Equal(a[node], b[node]) {
			return false
		}
	}
	return true
}
