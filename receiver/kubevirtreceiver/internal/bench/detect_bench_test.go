package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"libvirt.org/go/libvirt"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/hypervisor"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/launcher"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/libvirtconn"
)

// detectTimeout is the receiver's default libvirt.timeout.
const detectTimeout = 5 * time.Second

// BenchmarkDetect measures one detection the way the receiver's worker runs it: the
// domain's live XML through the real libvirt client (internal/libvirtconn: lookup, is-active
// and XML calls over one reused connection, each call bounded by a timeout) and
// hypervisor.Detect on it. One op is one detection; the domains are visited in turn.
// Run with -benchtime=Nx for N samples per percentile.
func BenchmarkDetect(b *testing.B) {
	b.Run("libvirtd/guests=1", func(b *testing.B) {
		d := daemonWith(b, 1)
		benchDetect(b, d.lv.URI(), d.names, hypervisor.QEMUTCG)
	})
	b.Run(fmt.Sprintf("libvirtd/guests=%d", guestCount()), func(b *testing.B) {
		d := daemonWith(b, guestCount())
		before, _, err := d.guestUsage()
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		benchDetect(b, d.lv.URI(), d.names, hypervisor.QEMUTCG)
		// What the idle guests cost the machine while they ran beside the benchmark.
		after, rss, err := d.guestUsage()
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(100*float64(after-before)/float64(time.Since(start)), "guests-cpu-%")
		b.ReportMetric(float64(rss)/(1<<20), "guests-rss-MiB")
	})
	b.Run("testdriver/domains=1000", func(b *testing.B) {
		uri := testDriverWith(b, "detect", 1000)
		names := make([]string, 1000)
		for i := range names {
			names[i] = setDomain("detect", i)
		}
		benchDetect(b, uri, names, "")
	})
}

var guestDaemons fixtures[int, *guestDaemon]

// daemonWith returns the shared libvirtd running n guests.
func daemonWith(b *testing.B, n int) *guestDaemon {
	return guestDaemons.get(b, n, func() (*guestDaemon, error) { return startGuestDaemon(n) })
}

var testDrivers fixtures[string, string]

// testDriverWith returns the URI of the shared test-driver node with the first n
// domains of VMI set.
func testDriverWith(b *testing.B, set string, n int) string {
	return testDrivers.get(b, fmt.Sprint(set, n), func() (string, error) {
		dir, err := tempDir()
		if err != nil {
			return "", err
		}
		return testDriverNode(dir, set, n)
	})
}

// benchDetect detects names in turn through a fresh client for uri; want, if set, is
// the type every domain must have.
func benchDetect(b *testing.B, uri string, names []string, want hypervisor.Type) {
	ctx := context.Background()
	c := libvirtconn.New(uri, detectTimeout, libvirtconn.Handlers{})
	defer c.Close()
	// Connecting (and, for the test driver, parsing its node file) is paid once per
	// receiver, not per detection.
	if _, err := c.DomainXML(ctx, names[0]); err != nil {
		b.Fatal(err)
	}
	total, rpc, parse := make(latencies, 0, b.N), make(latencies, 0, b.N), make(latencies, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		t0 := time.Now()
		xml, err := c.DomainXML(ctx, names[i%len(names)])
		t1 := time.Now()
		if err != nil {
			b.Fatal(err)
		}
		det, err := hypervisor.Detect(xml)
		t2 := time.Now()
		if err != nil || (want != "" && det.Type != want) {
			b.Fatalf("Detect(%s) = %v, %v; want %s", names[i%len(names)], det, err, want)
		}
		total, rpc, parse = append(total, t2.Sub(t0)), append(rpc, t1.Sub(t0)), append(parse, t2.Sub(t1))
	}
	b.StopTimer()
	total.report(b, "", time.Microsecond)
	rpc.report(b, "xml-", time.Microsecond)
	parse.report(b, "parse-", time.Microsecond)
}

// BenchmarkLibvirtRPC bounds detection from below: the libvirt calls a detection
// makes, each timed alone over one raw connection to the daemon with 100 guests, and
// the cheapest RPC there is (the library version) as the bare round trip.
func BenchmarkLibvirtRPC(b *testing.B) {
	d := daemonWith(b, guestCount())
	conn, err := libvirt.NewConnect(d.lv.URI())
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	var noop, lookup, active, xml latencies
	b.ResetTimer()
	for i := range b.N {
		t0 := time.Now()
		if _, err := conn.GetLibVersion(); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		dom, err := conn.LookupDomainByName(d.names[i%len(d.names)])
		if err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		if _, err := dom.IsActive(); err != nil {
			b.Fatal(err)
		}
		t3 := time.Now()
		if _, err := dom.GetXMLDesc(0); err != nil {
			b.Fatal(err)
		}
		t4 := time.Now()
		_ = dom.Free()
		noop, lookup, active, xml = append(noop, t1.Sub(t0)), append(lookup, t2.Sub(t1)), append(active, t3.Sub(t2)), append(xml, t4.Sub(t3))
	}
	b.StopTimer()
	noop.report(b, "roundtrip-", time.Microsecond)
	lookup.report(b, "lookup-", time.Microsecond)
	active.report(b, "isactive-", time.Microsecond)
	xml.report(b, "getxml-", time.Microsecond)
}

// BenchmarkDetectStatusFile measures detection on the launcher source's first path: a
// launcher's status file (libvirt's <domstatus>) read with launcher.ReadStatus and given
// to Detect, no RPC, beside the 100-guest daemon. "libvirtd" reads the ~10 KB files the
// daemon's real libvirtd wrote for its minimal guests; "kubevirt-sized" reads the ~21 KB
// one libvirt 9.0 wrote for a KubeVirt-shaped q35 guest (three disks, two NICs, guest
// agent channel, watchdog, rng; the seed kubevirt-status-large of internal/hypervisor),
// whose <domain> alone is 12 KB.
func BenchmarkDetectStatusFile(b *testing.B) {
	d := daemonWith(b, guestCount())
	b.Run(fmt.Sprintf("libvirtd/guests=%d", guestCount()), func(b *testing.B) {
		ls := make([]launcher.Launcher, len(d.names))
		for i, name := range d.names {
			ls[i] = launcher.Launcher{RuntimeDir: d.lv.LibvirtRuntimeDir(), StatusFile: d.lv.StatusFile(name)}
		}
		benchStatusFiles(b, ls, hypervisor.QEMUTCG)
	})
	b.Run("kubevirt-sized", func(b *testing.B) {
		doc, err := corpusSeed("../hypervisor/testdata/fuzz/FuzzDetect/kubevirt-status-large")
		if err != nil {
			b.Fatal(err)
		}
		dir := b.TempDir()
		l := launcher.Launcher{RuntimeDir: dir, StatusFile: filepath.Join(dir, "qemu", "run", "default_fedora-large.xml")}
		if err := os.MkdirAll(filepath.Dir(l.StatusFile), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(l.StatusFile, []byte(doc), 0o600); err != nil {
			b.Fatal(err)
		}
		benchStatusFiles(b, []launcher.Launcher{l}, hypervisor.QEMUTCG)
	})
}

// benchStatusFiles reads and detects the status files of ls in turn.
func benchStatusFiles(b *testing.B, ls []launcher.Launcher, want hypervisor.Type) {
	var total, read, parse latencies
	b.ResetTimer()
	for i := range b.N {
		l := ls[i%len(ls)]
		t0 := time.Now()
		xml, err := l.ReadStatus()
		t1 := time.Now()
		if err != nil {
			b.Fatal(err)
		}
		det, err := hypervisor.Detect(xml)
		t2 := time.Now()
		if err != nil || det.Type != want {
			b.Fatalf("Detect(%s) = %v, %v; want %s", l.StatusFile, det, err, want)
		}
		total, read, parse = append(total, t2.Sub(t0)), append(read, t1.Sub(t0)), append(parse, t2.Sub(t1))
	}
	b.StopTimer()
	total.report(b, "", time.Microsecond)
	read.report(b, "read-", time.Microsecond)
	parse.report(b, "parse-", time.Microsecond)
}

// corpusSeed reads a string seed of a Go fuzz corpus ("go test fuzz v1", one string).
func corpusSeed(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	_, lit, _ := strings.Cut(strings.TrimSpace(string(data)), "\n")
	s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lit, "string("), ")"))
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}
