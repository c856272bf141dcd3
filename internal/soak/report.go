package soak

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Report is what a soak saw.
type Report struct {
	Seed uint64
	// Duration is how long the soak made changes; Elapsed includes setting up, the
	// warm-up and the drain.
	Duration, Elapsed time.Duration
	// KVM says whether real guests could use KVM; without it they all run under TCG.
	KVM bool
	// Events counts VMI changes by kind (a volume action changes several VMIs); Faults
	// counts faults by kind.
	Events, Faults map[string]int
	// Expired counts the watches the API server refused as expired (410 Gone).
	Expired int64
	// QuietPoints counts the quiet points checked, MaxSeries the most series all
	// endpoints had to show at once.
	QuietPoints, MaxSeries int
	Mismatches             []Mismatch
	// Convergence holds, by class of burst, the time from a burst's last change until
	// every endpoint equalled the oracle.
	Convergence map[string]latencies
	Collectors  []CollectorUsage

	// Unchanged counts the quiet points after bursts that changed no endpoint's series
	// and no watch (their convergence is not timed).
	Unchanged int
	// Checked counts the series the quiet points checked, by hypervisor_type, on the
	// launcher nodes and on the volume node.
	Checked, CheckedVolume map[string]int
	// Slowest holds, by class of burst, the slowest bursts to converge.
	Slowest map[string][]SlowBurst
	// Following holds, for every API server fault, the time from the canaries' change
	// until every collector showed it: how long the collectors took to follow the API
	// server again.
	Following latencies
	// Stale lists the collectors that showed watch_synced 1 for longer than
	// staleGrace while they did not show a canary change.
	Stale []Stale
	// MostStale is the longest any collector showed watch_synced 1 while behind a
	// canary change.
	MostStale time.Duration

	opts Options
	// loopStart is when the soak began making changes.
	loopStart time.Time
}

// Stale is a collector that claimed a synced watch while it did not follow the API
// server: the README's watch_synced is 1 "while the collector sees its node's VMIs".
type Stale struct {
	QuietPoint int
	Node       string
	// For is how long it showed watch_synced 1 without the canary change.
	For   time.Duration
	Burst string
}

// followed records what the scrapes saw of the canaries after an API server fault.
// matched is when the quiet point saw every endpoint as the oracle says, and so every
// canary, for a probe that gave up earlier.
func (r *Report) followed(n int, burst []string, c *canaryWatch, matched time.Time) {
	last := c.since
	for _, node := range Nodes {
		shown := c.shown[node]
		if shown.IsZero() {
			shown = matched
		}
		if shown.After(last) {
			last = shown
		}
	}
	r.Following = append(r.Following, last.Sub(c.since))
	for _, node := range mapsKeys(c.stale) {
		d := c.stale[node]
		r.MostStale = max(r.MostStale, d)
		if d > staleGrace {
			r.Stale = append(r.Stale, Stale{QuietPoint: n, Node: node, For: d, Burst: strings.Join(burst, "; ")})
		}
	}
}

// SlowBurst is a burst that took long to converge.
type SlowBurst struct {
	Took  time.Duration
	Burst []string
	// Lagged says how the endpoints differed from the oracle just before they matched.
	Lagged string
}

// slowest keeps this many slowest bursts of each class.
const slowest = 3

// timed records a burst's convergence time.
func (r *Report) timed(class string, took time.Duration, burst []string, lagged string) {
	r.Convergence[class] = append(r.Convergence[class], took)
	s := append(r.Slowest[class], SlowBurst{Took: took, Burst: slices.Clone(burst), Lagged: lagged})
	slices.SortStableFunc(s, func(a, b SlowBurst) int { return cmp.Compare(b.Took, a.Took) })
	r.Slowest[class] = s[:min(len(s), slowest)]
}

// CollectorUsage is one collector's resources: at the start (after the warm-up) and the
// end (after the drain), both with no VMI; the most seen at quiet points, in all and in
// each quarter of the soak (which shows whether they level off).
type CollectorUsage struct {
	Node            string
	Start, End, Max Usage
	Quarters        [4]Usage
	// Grew says which resource did not stay flat, and by how much; empty when all did.
	Grew []string
}

func newReport(opts Options) *Report {
	return &Report{
		Seed: opts.Seed, opts: opts,
		Events: map[string]int{}, Faults: map[string]int{},
		Convergence: map[string]latencies{}, Checked: map[string]int{}, CheckedVolume: map[string]int{},
		Slowest: map[string][]SlowBurst{},
	}
}

// Tolerances of "flat", between the start and the end of the soak (both with no VMI, so
// the same work): what legitimately differs between two idle moments, and no more.
const (
	// goroutineSlack: an HTTP connection the collector's client-go keeps to the API
	// server (the proxy speaks HTTP/1.1, and a restart may leave one more idle
	// connection, each with a reader and a writer goroutine) and a
	// runtime helper that runs on demand. A leak per VMI, launcher connection or fault
	// would be tens to hundreds over a soak.
	goroutineSlack = 6
	// fdSlack: one or two idle connections to the API server as above, and the socket
	// of a scrape being closed.
	fdSlack = 3
	// threadSlack: Go keeps the threads it once needed, and a collector needs one per
	// libvirt call in flight (the calls block in C). The end may exceed the peak of the
	// soak's first half by a few, when the second half had more calls in flight at once;
	// a thread stuck in a call for good, per fault, would grow without bound.
	threadSlack = 4
)

// rssGrowth bounds how much more RSS the end may hold than the start: the Go runtime
// returns freed memory to the system only gradually (its scavenger), so the peaks of a
// soak (a relist of every VMI after an expired watch, the warm-up's) leave RSS above
// the idle level for minutes.
func rssGrowth(start int64) int64 { return max(start/2, 24<<20) }

// judge decides, for each collector, whether its resources stayed flat.
func (r *Report) judge() {
	for i := range r.Collectors {
		c := &r.Collectors[i]
		c.Grew = nil
		if c.Start.Goroutines >= 0 && c.End.Goroutines > c.Start.Goroutines+goroutineSlack {
			c.Grew = append(c.Grew, fmt.Sprintf("goroutines %d -> %d (more than %d more)", c.Start.Goroutines, c.End.Goroutines, goroutineSlack))
		}
		if c.End.FDs > c.Start.FDs+fdSlack {
			c.Grew = append(c.Grew, fmt.Sprintf("file descriptors %d -> %d (more than %d more)", c.Start.FDs, c.End.FDs, fdSlack))
		}
		if ref := max(c.Start.Threads, c.Quarters[0].Threads, c.Quarters[1].Threads); c.End.Threads > ref+threadSlack {
			c.Grew = append(c.Grew, fmt.Sprintf("threads %d at the end, more than %d above the first half's most (%d)", c.End.Threads, threadSlack, ref))
		}
		if c.End.RSS > c.Start.RSS+rssGrowth(c.Start.RSS) {
			c.Grew = append(c.Grew, fmt.Sprintf("RSS %.1f -> %.1f MiB (more than %.1f MiB more)",
				mib(c.Start.RSS), mib(c.End.RSS), mib(rssGrowth(c.Start.RSS))))
		}
	}
}

// Flat says whether every collector's resources stayed flat.
func (r *Report) Flat() bool {
	for _, c := range r.Collectors {
		if len(c.Grew) > 0 {
			return false
		}
	}
	return true
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func counts(m map[string]int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

// worst is the longest convergence time of any class.
func (r *Report) worst() time.Duration {
	var w time.Duration
	for _, l := range r.Convergence {
		w = max(w, l.percentile(1))
	}
	return w
}

// progress is a one-line summary for progress logs.
func (r *Report) progress() string {
	return fmt.Sprintf("%d events, %d faults, %d quiet points, %d mismatches, worst convergence %v",
		sum(r.Events), sum(r.Faults), r.QuietPoints, len(r.Mismatches), r.worst().Round(time.Millisecond))
}

func (r *Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d: %v of changes, %v in all (setup, warm-up, drain); guests with KVM: %v\n",
		r.Seed, r.Duration.Round(time.Second), r.Elapsed.Round(time.Second), r.KVM)
	fmt.Fprintf(&b, "replay: SOAK_SEED=%d make soak SOAK_TIME=%v\n\n", r.Seed, r.opts.Duration)
	fmt.Fprintf(&b, "events       %d: %s\n", sum(r.Events), counts(r.Events))
	fmt.Fprintf(&b, "faults       %d: %s\n", sum(r.Faults), counts(r.Faults))
	fmt.Fprintf(&b, "watches refused as expired (410 Gone): %d\n", r.Expired)
	fmt.Fprintf(&b, "quiet points %d (%d after bursts that changed no endpoint); most series at once: %d\n",
		r.QuietPoints, r.Unchanged, r.MaxSeries)
	fmt.Fprintf(&b, "series checked at quiet points, by hypervisor_type: launcher nodes: %s; volume node: %s\n",
		counts(r.Checked), counts(r.CheckedVolume))
	fmt.Fprintf(&b, "mismatches   %d\n", len(r.Mismatches))
	for _, m := range r.Mismatches {
		fmt.Fprintf(&b, "  %s\n", strings.ReplaceAll(m.String(), "\n", "\n  "))
	}
	fmt.Fprintf(&b, "\ntime from a burst's last change that altered what an endpoint must show until every endpoint showed it:\n")
	fmt.Fprintf(&b, "  %-28s %6s %9s %9s %9s\n", "burst", "count", "median", "p99", "worst")
	for _, c := range classes {
		l := r.Convergence[c]
		fmt.Fprintf(&b, "  %-28s %6d %9v %9v %9v\n", c, len(l),
			l.percentile(0.5).Round(time.Millisecond), l.percentile(0.99).Round(time.Millisecond), l.percentile(1).Round(time.Millisecond))
	}
	fmt.Fprintf(&b, "  %-28s %6d %9v %9v %9v\n", "following again (canaries)", len(r.Following),
		r.Following.percentile(0.5).Round(time.Millisecond), r.Following.percentile(0.99).Round(time.Millisecond),
		r.Following.percentile(1).Round(time.Millisecond))
	fmt.Fprintf(&b, "watch_synced 1 while behind a canary change: longest %v; more than %v: %d\n",
		r.MostStale.Round(time.Millisecond), staleGrace, len(r.Stale))
	for _, st := range r.Stale {
		fmt.Fprintf(&b, "  quiet point %d, %s: %v (%s)\n", st.QuietPoint, st.Node, st.For.Round(time.Millisecond), st.Burst)
	}
	fmt.Fprintf(&b, "the slowest bursts:\n")
	for _, c := range classes {
		for _, s := range r.Slowest[c] {
			fmt.Fprintf(&b, "  %v (%s):\n    %s\n", s.Took.Round(time.Millisecond), c, strings.Join(s.Burst, "\n    "))
			if s.Lagged != "" {
				fmt.Fprintf(&b, "    until then %s\n", strings.ReplaceAll(s.Lagged, "\n", "\n    until then "))
			}
		}
	}
	fmt.Fprintf(&b, "\ncollector resources, start (after the warm-up) -> end (after the drain), both with no VMI; most at quiet points:\n")
	fmt.Fprintf(&b, "  %-18s %-22s %-16s %-16s %-26s %s\n", "node", "goroutines", "FDs", "threads", "RSS MiB", "live heap MB")
	for _, c := range r.Collectors {
		fmt.Fprintf(&b, "  %-18s %-22s %-16s %-16s %-26s %d -> %d\n", c.Node,
			fmt.Sprintf("%d -> %d (max %d)", c.Start.Goroutines, c.End.Goroutines, c.Max.Goroutines),
			fmt.Sprintf("%d -> %d (max %d)", c.Start.FDs, c.End.FDs, c.Max.FDs),
			fmt.Sprintf("%d -> %d (max %d)", c.Start.Threads, c.End.Threads, c.Max.Threads),
			fmt.Sprintf("%.1f -> %.1f (max %.1f)", mib(c.Start.RSS), mib(c.End.RSS), mib(c.Max.RSS)),
			c.Start.HeapMB, c.End.HeapMB)
	}
	fmt.Fprintf(&b, "most at quiet points in each quarter of the soak (threads, RSS MiB):\n")
	for _, c := range r.Collectors {
		var qs []string
		for _, q := range c.Quarters {
			qs = append(qs, fmt.Sprintf("%d, %.1f", q.Threads, mib(q.RSS)))
		}
		fmt.Fprintf(&b, "  %-18s %s\n", c.Node, strings.Join(qs, " | "))
	}
	if r.Flat() {
		fmt.Fprintf(&b, "resources: flat\n")
	}
	for _, c := range r.Collectors {
		for _, g := range c.Grew {
			fmt.Fprintf(&b, "resources: %s: %s\n", c.Node, g)
		}
	}
	return b.String()
}
