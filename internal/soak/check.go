package soak

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv/percentile"
)

const (
	infoMetric   = "kubevirt_vmi_hypervisor_info"
	syncedMetric = "kubevirt_vmi_hypervisor_watch_synced"
)

// scrapeClient opens a connection per scrape, so that no idle connection of the soak's
// stays open in the collectors between scrapes and their file descriptor and goroutine
// counts do not depend on when the soak last scraped.
var scrapeClient = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// endpoint is what one scrape of a collector's endpoint says.
type endpoint struct {
	series map[Series]bool
	synced bool
}

// scrape reads a collector's hypervisor series and whether its watch is synced.
func scrape(ctx context.Context, url string) (endpoint, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return endpoint{}, err
	}
	resp, err := scrapeClient.Do(req)
	if err != nil {
		return endpoint{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		return endpoint{}, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return parseEndpoint(resp.Body)
}

// parseEndpoint reads the exposition format. A hypervisor series with other labels than
// the four of the contract, or a value other than 1, is kept with its type marked, so
// that it never equals an expected series.
func parseEndpoint(r io.Reader) (endpoint, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(r)
	if err != nil {
		return endpoint{}, fmt.Errorf("parsing the exposition: %w", err)
	}
	e := endpoint{series: map[Series]bool{}}
	if f := families[infoMetric]; f != nil {
		for _, m := range f.GetMetric() {
			e.series[seriesOf(m)] = true
		}
	}
	if f := families[syncedMetric]; f != nil && len(f.GetMetric()) == 1 {
		e.synced = f.GetMetric()[0].GetGauge().GetValue() == 1
	}
	return e, nil
}

func seriesOf(m *dto.Metric) Series {
	var s Series
	var other []string
	for _, l := range m.GetLabel() {
		switch l.GetName() {
		case "namespace":
			s.Namespace = l.GetValue()
		case "name":
			s.Name = l.GetValue()
		case "node":
			s.Node = l.GetValue()
		case "hypervisor_type":
			s.Type = l.GetValue()
		default:
			other = append(other, l.GetName()+"="+l.GetValue())
		}
	}
	if v := m.GetGauge().GetValue(); v != 1 {
		other = append(other, fmt.Sprintf("value %v", v))
	}
	if len(other) > 0 {
		s.Type += " [" + strings.Join(other, ",") + "]"
	}
	return s
}

// compare returns, by node, how each endpoint differs from what it must show: the
// oracle's series, and a synced watch.
func compare(want map[string]map[Series]bool, got map[string]endpoint) map[string]string {
	diffs := map[string]string{}
	for node, w := range want {
		e := got[node]
		d := Diff(w, e.series)
		if !e.synced {
			d = strings.TrimSpace(d + "\n" + syncedMetric + " is not 1")
		}
		if d != "" {
			diffs[node] = d
		}
	}
	return diffs
}

// latencies are convergence times of one class of burst.
type latencies []time.Duration

func (l latencies) percentile(q float64) time.Duration { return percentile.Of(l, q) }

// Mismatch is a moment when an endpoint did not show what it must.
type Mismatch struct {
	// QuietPoint is the number of the quiet point.
	QuietPoint int
	// Phase is "converge" (not equal within the burst's bound) or "quiet" (drifted
	// away while nothing changed).
	Phase string
	// Node is the endpoint's collector.
	Node string
	// Diff says how the endpoint differed.
	Diff string
	// Burst are the changes since the previous quiet point.
	Burst []string
	// After is how long after the burst's last change the mismatch was seen.
	After time.Duration
	// Recovered is when the endpoint matched again after the burst's last change, 0
	// if never.
	Recovered time.Duration
}

func (m Mismatch) String() string {
	rec := "never recovered"
	if m.Recovered > 0 {
		rec = fmt.Sprintf("matched again %v after the change", m.Recovered.Round(time.Millisecond))
	}
	return fmt.Sprintf("quiet point %d (%s), %s, %v after the last change; %s\n  burst:\n    %s\n  diff:\n    %s",
		m.QuietPoint, m.Phase, m.Node, m.After.Round(time.Millisecond), rec,
		strings.Join(m.Burst, "\n    "), strings.ReplaceAll(m.Diff, "\n", "\n    "))
}

// scrapeAll scrapes every collector.
func (s *soak) scrapeAll(ctx context.Context) (map[string]endpoint, error) {
	got := make(map[string]endpoint, len(s.collectors))
	for _, c := range s.collectors {
		e, err := scrape(ctx, c.MetricsURL)
		if err != nil {
			return nil, fmt.Errorf("collector of %s: %w\n%s", c.node, err, c.logTail())
		}
		got[c.node] = e
	}
	return got, nil
}

// Polling intervals at a quiet point: while converging (the resolution of convergence
// times) and while checking that the endpoints stay put.
const (
	convergePoll = 50 * time.Millisecond
	settlePoll   = 100 * time.Millisecond
)

// quietPoint is where a burst ends. Nothing changes from here on until every endpoint
// equals the oracle and shows a synced watch; how long after the burst's last change
// (since) that took is the burst's convergence time. Not equal within the burst's
// recovery bound is a mismatch. Then, for the settle time plus up to as much again,
// every scrape must still be equal: a difference there is a mismatch too (the endpoint
// drifted while nothing changed).
func (s *soak) quietPoint(ctx context.Context, since time.Time) error {
	s.report.QuietPoints++
	n := s.report.QuietPoints
	want := make(map[string]map[Series]bool, len(Nodes))
	total := 0
	for _, node := range Nodes {
		w, err := s.world.Expected(node)
		if err != nil {
			return fmt.Errorf("quiet point %d: %w\n  burst:\n    %s", n, err, strings.Join(s.burst, "\n    "))
		}
		want[node] = w
		total += len(w)
		checked := s.report.Checked
		if node == NodeVolume {
			checked = s.report.CheckedVolume
		}
		for series := range w {
			checked[series.Type]++
		}
	}
	s.report.MaxSeries = max(s.report.MaxSeries, total)
	bound := max(s.bound, eventBound)
	class := classOf(bound)

	p := s.finishProbe(since.Add(bound))
	matched, err := s.converge(ctx, n, "converge", since, bound, want)
	if err != nil {
		return err
	}
	var before map[string]string
	if p != nil && !p.matched.IsZero() {
		matched, before = p.matched, p.lastDiff
	}
	if c := s.canaries; c != nil {
		s.canaries = nil
		s.report.followed(n, s.burst, c, matched)
	}
	if s.changedAt.IsZero() {
		s.report.Unchanged++
	} else {
		took := matched.Sub(s.changedAt)
		var lagged []string
		for _, node := range mapsKeys(before) {
			lagged = append(lagged, node+": "+strings.ReplaceAll(before[node], "\n", "; "))
		}
		s.report.timed(class, took, s.burst, strings.Join(lagged, "\n"))
		if s.opts.Verbose {
			s.logf("quiet point %d: every endpoint as the oracle says %v after the change", n, took.Round(time.Millisecond))
			if took > time.Second {
				s.logf("  until then: %s", strings.Join(lagged, "\n  "))
			}
		}
	}

	settle := s.opts.Settle + time.Duration(s.rng.Int64N(int64(s.opts.Settle)))
	end := time.Now().Add(settle)
	tick := time.NewTicker(settlePoll)
	defer tick.Stop()
	for time.Now().Before(end) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		got, err := s.scrapeAll(ctx)
		if err != nil {
			return err
		}
		diffs := compare(want, got)
		if len(diffs) == 0 {
			continue
		}
		at := time.Now()
		first := len(s.report.Mismatches)
		for _, node := range mapsKeys(diffs) {
			s.report.Mismatches = append(s.report.Mismatches, Mismatch{
				QuietPoint: n, Phase: "quiet", Node: node, Diff: diffs[node],
				Burst: slices.Clone(s.burst), After: at.Sub(since),
			})
		}
		s.logf("MISMATCH at quiet point %d: an endpoint changed while nothing did (seed %d):\n%s", n, s.opts.Seed, s.report.Mismatches[first])
		if _, err := s.converge(ctx, n, "re-converge", at, bound, want); err != nil {
			return err
		}
		for i := first; i < len(s.report.Mismatches); i++ {
			s.report.Mismatches[i].Recovered = time.Since(since)
		}
	}
	s.sampleUsage()
	s.burst, s.bound, s.changedAt = nil, 0, time.Time{}
	return nil
}

// converge polls the endpoints until they equal want and returns when they did. Past
// since+bound it records a mismatch and keeps polling for as long again; an endpoint
// that never matches ends the soak.
func (s *soak) converge(ctx context.Context, n int, phase string, since time.Time, bound time.Duration, want map[string]map[Series]bool) (time.Time, error) {
	tick := time.NewTicker(convergePoll)
	defer tick.Stop()
	first := -1
	for {
		got, err := s.scrapeAll(ctx)
		if err != nil {
			return time.Time{}, err
		}
		diffs := compare(want, got)
		now := time.Now()
		if len(diffs) == 0 {
			if first >= 0 {
				took := now.Sub(since)
				for i := first; i < len(s.report.Mismatches); i++ {
					s.report.Mismatches[i].Recovered = took
				}
				s.logf("quiet point %d: the endpoints match again %v after the last change", n, took.Round(time.Millisecond))
			}
			return now, nil
		}
		if first < 0 && now.Sub(since) > bound {
			first = len(s.report.Mismatches)
			for _, node := range mapsKeys(diffs) {
				s.report.Mismatches = append(s.report.Mismatches, Mismatch{
					QuietPoint: n, Phase: phase, Node: node, Diff: diffs[node],
					Burst: slices.Clone(s.burst), After: now.Sub(since),
				})
			}
			for _, m := range s.report.Mismatches[first:] {
				s.logf("MISMATCH (seed %d): %s\n%s", s.opts.Seed, m, s.collectorByNode(m.Node).logTail())
			}
		}
		if now.Sub(since) > 2*bound {
			return time.Time{}, fmt.Errorf("quiet point %d: the endpoints still differ from the oracle %v after the last change; giving up (replay with SOAK_SEED=%d SOAK_TIME=%v)",
				n, now.Sub(since).Round(time.Second), s.opts.Seed, s.opts.Duration)
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-tick.C:
		}
	}
}

// Classes of burst, by the recovery bound of their changes.
const (
	classEvents  = "VMI changes"
	classLibvirt = "libvirt faults and retries"
	classAPI     = "API server faults"
)

var classes = []string{classEvents, classLibvirt, classAPI}

func classOf(bound time.Duration) string {
	switch {
	case bound >= apiBound:
		return classAPI
	case bound >= libvirtBound:
		return classLibvirt
	default:
		return classEvents
	}
}

func mapsKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
