package bench

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"libvirt.org/go/libvirt"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv/scrape"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv/tied"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/hypervisor"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/launcher"
)

// scrapeGuests is how many real guests the scrape comparison runs: BENCH_SCRAPE_GUESTS,
// default 50.
func scrapeGuests() int {
	if n, err := strconv.Atoi(os.Getenv("BENCH_SCRAPE_GUESTS")); err == nil && n > 0 {
		return n
	}
	return 50
}

// BenchmarkScrapeVsLibvirt compares one scrape of the collector with one scrape of an
// exporter that asks libvirt at scrape time, as scrape-time libvirt exporters do, on
// the same libvirtd running the same real QEMU guests, in the same run. Both are
// processes of their own serving /metrics, scraped in turn b.N times each:
//
//   - collector: the built collector, shipped configuration, libvirt.source uri at
//     that libvirtd, one Running VMI per guest in the API server. A scrape reads what
//     the exporter holds; libvirt was asked once per VMI, when it started.
//   - at-scrape: this test binary run as a minimal exporter (runScrapeTimeExporter,
//     client_golang and promhttp as exporters use them): per scrape it lists the
//     running domains over one kept connection, reads each one's XML and its type, and
//     serves one line each. Nothing more: a real one also reads stats, and often dials
//     per scrape.
//
// Reported per scrape, in microseconds of CPU: the serving process's (-cpu-us) and
// libvirtd's over the same scrapes (-libvirtd-cpu-us), for each; and cpu-ratio, the
// at-scrape exporter's CPU and its libvirtd's over the collector's and its libvirtd's.
// Run with -benchtime=300x or more.
func BenchmarkScrapeVsLibvirt(b *testing.B) {
	n := scrapeGuests()
	d := daemonWith(b, n)
	c := sharedCluster(b)
	const node = "node-scrape"
	vmisFixture.get(b, fmt.Sprint("scrape-guests-", n), func() (struct{}, error) {
		return struct{}{}, parallel(n, 16, func(i int) error {
			ns, name, _ := launcher.SplitDomainName(d.names[i])
			_, err := c.vmis(ns).Create(context.Background(), realisticVMI(ns, name, node, "Running", newUID()), metav1.CreateOptions{})
			return err
		})
	})
	col := collectorFor(b, "scrape-libvirt", func() (*collector, error) { return startCollector(c, node, d.lv.URI()) })
	waitSeries(b, col, n)
	exp, err := startScrapeTimeExporter(d.lv.URI())
	if err != nil {
		b.Fatal(err)
	}
	defer exp.stop()
	if got := countLines(mustScrape(b, exp.url), "kubevirt_vmi_hypervisor_info{"); got != n {
		b.Fatalf("the at-scrape exporter serves %d lines, want %d", got, n)
	}

	b.ResetTimer()
	colCPU, colLibvirtd := scrapeCost(b, col.MetricsURL, col.pid, d.lv.PID(), n)
	expCPU, expLibvirtd := scrapeCost(b, exp.url, exp.cmd.Process.Pid, d.lv.PID(), n)
	b.StopTimer()
	us := func(d time.Duration) float64 { return float64(d) / float64(b.N) / float64(time.Microsecond) }
	b.ReportMetric(us(colCPU), "collector-cpu-us")
	b.ReportMetric(us(colLibvirtd), "collector-libvirtd-cpu-us")
	b.ReportMetric(us(expCPU), "at-scrape-cpu-us")
	b.ReportMetric(us(expLibvirtd), "at-scrape-libvirtd-cpu-us")
	b.ReportMetric(float64(expCPU+expLibvirtd)/float64(colCPU+colLibvirtd), "cpu-ratio")
}

// scrapeCost scrapes url b.N times, checking each has n hypervisor lines, and returns
// the CPU that process pid and libvirtd used meanwhile.
func scrapeCost(b *testing.B, url string, pid, libvirtd, n int) (cpu, libvirtdCPU time.Duration) {
	cpu0, err := cpuTime(pid)
	if err != nil {
		b.Fatal(err)
	}
	lv0, err := cpuTime(libvirtd)
	if err != nil {
		b.Fatal(err)
	}
	for range b.N {
		if got := countLines(mustScrape(b, url), "kubevirt_vmi_hypervisor_info{"); got != n {
			b.Fatalf("%s: %d lines, want %d", url, got, n)
		}
	}
	cpu1, err := cpuTime(pid)
	if err != nil {
		b.Fatal(err)
	}
	lv1, err := cpuTime(libvirtd)
	if err != nil {
		b.Fatal(err)
	}
	return cpu1 - cpu0, lv1 - lv0
}

func mustScrape(b *testing.B, url string) string {
	b.Helper()
	body, err := scrape.Text(context.Background(), url)
	if err != nil {
		b.Fatal(err)
	}
	return body
}

// scrapeTimeExporterEnv, set to a libvirt URI, makes this test binary run as the
// at-scrape exporter (see TestMain) on the address in scrapeTimeExporterAddrEnv.
const (
	scrapeTimeExporterEnv     = "BENCH_AT_SCRAPE_EXPORTER_URI"
	scrapeTimeExporterAddrEnv = "BENCH_AT_SCRAPE_EXPORTER_ADDR"
)

type scrapeTimeExporter struct {
	cmd    *exec.Cmd
	exited chan struct{}
	url    string
}

// startScrapeTimeExporter runs this test binary as the at-scrape exporter for uri and
// returns once it serves.
func startScrapeTimeExporter(uri string) (*scrapeTimeExporter, error) {
	port, err := testenv.FreePort()
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), scrapeTimeExporterEnv+"="+uri, scrapeTimeExporterAddrEnv+"="+addr)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	e := &scrapeTimeExporter{cmd: cmd, exited: make(chan struct{}), url: "http://" + addr + "/metrics"}
	if err := tied.Start(cmd, func(error) { close(e.exited) }); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, func(context.Context) (bool, error) {
		_, err := scrape.Text(ctx, e.url)
		return err == nil, nil
	}); err != nil {
		e.stop()
		return nil, fmt.Errorf("the at-scrape exporter did not serve %s: %w", e.url, err)
	}
	return e, nil
}

func (e *scrapeTimeExporter) stop() {
	_ = e.cmd.Process.Kill()
	<-e.exited
}

// runScrapeTimeExporter serves, on addr, one line per running domain of the libvirt at
// uri, asking libvirt for them at every scrape: a collector of client_golang's, served
// by its promhttp as exporters built on it are (gzip when asked, as Prometheus asks).
// It returns only on error.
func runScrapeTimeExporter(uri, addr string) error {
	conn, err := libvirt.NewConnect(uri)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	if err := reg.Register(atScrapeCollector{conn}); err != nil {
		return err
	}
	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return http.ListenAndServe(addr, nil) //nolint:gosec // a benchmark's helper on loopback, alive for one run
}

// atScrapeCollector asks libvirt for every running domain and its XML at each scrape.
type atScrapeCollector struct {
	conn *libvirt.Connect
}

var atScrapeDesc = prometheus.NewDesc("kubevirt_vmi_hypervisor_info", "Hypervisor of a running VMI.",
	[]string{"hypervisor_type", "name", "namespace"}, nil)

func (atScrapeCollector) Describe(ch chan<- *prometheus.Desc) { ch <- atScrapeDesc }

func (c atScrapeCollector) Collect(ch chan<- prometheus.Metric) {
	doms, err := c.conn.ListAllDomains(libvirt.CONNECT_LIST_DOMAINS_ACTIVE)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(atScrapeDesc, err)
		return
	}
	for _, dom := range doms {
		name, err := dom.GetName()
		if err == nil {
			var xml string
			if xml, err = dom.GetXMLDesc(0); err == nil {
				det, _ := hypervisor.Detect(xml)
				ns, vm, _ := launcher.SplitDomainName(name)
				ch <- prometheus.MustNewConstMetric(atScrapeDesc, prometheus.GaugeValue, 1, string(det.Type), vm, ns)
			}
		}
		if err != nil {
			ch <- prometheus.NewInvalidMetric(atScrapeDesc, err)
		}
		_ = dom.Free()
	}
}
