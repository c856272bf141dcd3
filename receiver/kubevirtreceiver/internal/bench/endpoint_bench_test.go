package bench

import (
	"context"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// The event-to-endpoint benchmark's node: endpointRunning VMIs run throughout (their
// series are on the endpoint, so every scrape serialises them), and the benchmark
// cycles through a pool of endpointPool others, Scheduled when it starts. A run of up
// to endpointPool ops uses a different VMI for each.
const (
	endpointRunning = 100
	endpointPool    = 100
)

// pollEvery is how often the benchmark scrapes while it waits for a line: the
// latencies are measured to within this plus one scrape (~1 ms at this size).
const pollEvery = 2 * time.Millisecond

// endpointNext is the next VMI of the pool, kept across the testing package's calls.
var endpointNext int

// maxPhase bounds the random pause before each patch, so that patches meet the
// receiver's periodic emission and the runtime's timers at any point of their cycles.
const maxPhase = 50 * time.Millisecond

// BenchmarkEventToEndpoint measures what a user sees: from a VMI's status patched in
// the real API server (phase Scheduled -> Running, as virt-handler does) to its exact
// line on the Prometheus endpoint of the built collector running the shipped
// configuration, and from the patch to Succeeded to the line gone. One op is one VMI
// going through both; each VMI is a running test-driver domain, detection included,
// and 100 other VMIs run on the node meanwhile. Beside the latencies it reports the
// scrapes' own wall time (scrape-p50-ms), which bounds the resolution from below, and
// how long the patch request itself takes to return (patch-*-ms: the API server and
// etcd, part of every latency and nothing the collector does). Run with
// -benchtime=60x or more.
func BenchmarkEventToEndpoint(b *testing.B) {
	c := sharedCluster(b)
	const node, set = "node-e2e", "e2e"
	uri := testDriverWith(b, set, endpointRunning+endpointPool)
	vmisFixture.get(b, set, func() (struct{}, error) {
		ctx := context.Background()
		if err := c.createVMIs(ctx, set, 0, endpointRunning, node, "Running"); err != nil {
			return struct{}{}, err
		}
		return struct{}{}, c.createVMIs(ctx, set, endpointRunning, endpointRunning+endpointPool, node, "Scheduled")
	})
	col := collectorFor(b, "e2e", func() (*collector, error) { return startCollector(c, node, uri) })
	waitSeries(b, col, endpointRunning)

	ctx := context.Background()
	appear, vanish := make(latencies, 0, b.N), make(latencies, 0, b.N)
	var scrapes, patches latencies
	b.ResetTimer()
	for range b.N {
		i := endpointRunning + endpointNext%endpointPool
		endpointNext++
		ns, name := setVMI(set, i)
		line := infoLine(ns, name, node, reportedType(i))

		randomPhase(b)
		start := time.Now()
		if err := c.setPhase(ctx, ns, name, "Running"); err != nil {
			b.Fatal(err)
		}
		patches = append(patches, time.Since(start))
		scrapes = waitEndpoint(b, col, line, true, scrapes)
		appear = append(appear, time.Since(start))

		randomPhase(b)
		start = time.Now()
		if err := c.setPhase(ctx, ns, name, "Succeeded"); err != nil {
			b.Fatal(err)
		}
		patches = append(patches, time.Since(start))
		scrapes = waitEndpoint(b, col, line, false, scrapes)
		vanish = append(vanish, time.Since(start))

		// Back to Scheduled, unmeasured, for the next run through the pool.
		if err := c.setPhase(ctx, ns, name, "Scheduled"); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	appear.report(b, "appear-", time.Millisecond)
	vanish.report(b, "vanish-", time.Millisecond)
	b.ReportMetric(float64(scrapes.percentile(0.5))/float64(time.Millisecond), "scrape-p50-ms")
	b.ReportMetric(float64(patches.percentile(0.5))/float64(time.Millisecond), "patch-p50-ms")
	b.ReportMetric(float64(patches.percentile(0.99))/float64(time.Millisecond), "patch-p99-ms")
}

// randomPhase pauses for a random time up to maxPhase, untimed (see maxPhase).
func randomPhase(b *testing.B) {
	b.StopTimer()
	<-time.After(rand.N(maxPhase))
	b.StartTimer()
}

// waitEndpoint scrapes until line is on the endpoint (present) or off it, for at most
// 10 s, and returns scrapes with the wall time of each scrape added.
func waitEndpoint(b *testing.B, col *collector, line string, present bool, scrapes latencies) latencies {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := wait.PollUntilContextCancel(ctx, pollEvery, true, func(context.Context) (bool, error) {
		start := time.Now()
		body, err := col.Scrape(ctx)
		scrapes = append(scrapes, time.Since(start))
		if err != nil {
			return false, nil
		}
		return strings.Contains(body, line+"\n") == present, nil
	})
	if err != nil {
		b.Fatalf("waiting for %q present=%v: %v", line, present, err)
	}
	return scrapes
}
