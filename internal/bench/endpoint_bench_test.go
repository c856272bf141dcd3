package bench

import (
	"context"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv"
)

// endpointVMIs is the pool of VMIs the event-to-endpoint benchmark cycles through: a
// run of up to this many ops uses a different VMI for each.
const endpointVMIs = 1000

// pollEvery is how often the benchmark scrapes while it waits for a line: the
// latencies are measured to within this plus one scrape (~1 ms).
const pollEvery = 2 * time.Millisecond

// endpointNext is the next VMI of the pool, kept across the testing package's calls.
var endpointNext int

// maxPhase bounds the random pause before each patch. The batch processor flushes on a
// free-running 200ms timer; a loop that patches right after seeing a flush would hit
// the same point of that cycle every time (and measure ~200ms always), where real
// events arrive at any point of it.
const maxPhase = 250 * time.Millisecond

// BenchmarkEventToEndpoint measures what a user sees: from a VMI's status patched in
// the real API server (phase Scheduled -> Running, as virt-handler does) to its line
// on the Prometheus endpoint of the built collector, and from the patch to Succeeded
// to the line gone. One op is one VMI going through both; each VMI is a running
// test-driver domain, detection included. Each patch waits a random time first, so
// that events meet the batch processor's timer at any point of its cycle. Run with
// -benchtime=200x or more.
//
//   - shipped: the shipped pipeline, whose batch processor holds a batch up to 200ms;
//   - nobatch: the same without the batch processor, the receiver's own latency.
func BenchmarkEventToEndpoint(b *testing.B) {
	for _, p := range []pipeline{shipped, noBatch} {
		b.Run(string(p), func(b *testing.B) {
			c := sharedCluster(b)
			node := "node-e2e"
			uri := testDriverWith(b, "e2e", endpointVMIs)
			vmisFixture.get(b, "e2e", func() (struct{}, error) {
				return struct{}{}, c.createVMIs(context.Background(), "e2e", 0, endpointVMIs, node, "Scheduled")
			})
			col := collectorFor(b, "e2e-"+string(p), func() (*collector, error) { return startCollector(c, node, uri, p) })
			benchEventToEndpoint(b, c, col, node)
		})
	}
}

func benchEventToEndpoint(b *testing.B, c *cluster, col *collector, node string) {
	ctx := context.Background()
	appear, vanish := make(latencies, 0, b.N), make(latencies, 0, b.N)
	b.ResetTimer()
	for range b.N {
		i := endpointNext % endpointVMIs
		endpointNext++
		ns, name := setVMI("e2e", i)
		line := infoLine(ns, name, node, reportedType(i))

		randomPhase(b)
		start := time.Now()
		if err := c.setPhase(ctx, ns, name, "Running"); err != nil {
			b.Fatal(err)
		}
		waitEndpoint(b, col, line, true)
		appear = append(appear, time.Since(start))

		randomPhase(b)
		start = time.Now()
		if err := c.setPhase(ctx, ns, name, "Succeeded"); err != nil {
			b.Fatal(err)
		}
		waitEndpoint(b, col, line, false)
		vanish = append(vanish, time.Since(start))

		// Back to Scheduled, unmeasured, for the next run through the pool.
		if err := c.setPhase(ctx, ns, name, "Scheduled"); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	appear.report(b, "appear-", time.Millisecond)
	vanish.report(b, "vanish-", time.Millisecond)
}

// randomPhase pauses for a random time up to maxPhase, untimed (see maxPhase).
func randomPhase(b *testing.B) {
	b.StopTimer()
	<-time.After(rand.N(maxPhase))
	b.StartTimer()
}

// waitEndpoint scrapes until line is on the endpoint (present) or off it, for at most
// 10 s.
func waitEndpoint(b *testing.B, col *collector, line string, present bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := testenv.Poll(ctx, pollEvery, func() (bool, error) {
		body, err := col.Scrape(ctx)
		if err != nil {
			return false, nil
		}
		return strings.Contains(body, line+"\n") == present, nil
	})
	if err != nil {
		b.Fatalf("waiting for %q present=%v: %v", line, present, err)
	}
}
