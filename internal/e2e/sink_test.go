package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv"
)

// otelMetric is the receiver's metric as OTLP carries it.
const otelMetric = "kubevirt.vmi.hypervisor.info"

// testCollectorBinEnv names the environment variable that points tests at the test
// distribution (builder-config-test.yaml); `make test` sets it to
// bin/otelcol-kubevirt-test.
const testCollectorBinEnv = "OTELCOL_KUBEVIRT_TEST_BIN"

// sink is an instance of the test distribution, the collector plus the OTLP receiver
// and the file exporter, that receives OTLP/gRPC and writes every request to a file
// (testdata/otlp-sink.yaml).
type sink struct {
	col *testenv.Collector
	// Endpoint is where it takes OTLP/gRPC, host:port.
	Endpoint string
	file     string
}

func startSink(ctx context.Context, t *testing.T) *sink {
	t.Helper()
	bin := os.Getenv(testCollectorBinEnv)
	if bin == "" {
		testenv.Unavailable(t, "%s is not set; `make test` builds the test distribution and sets it", testCollectorBinEnv)
	}
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	s := &sink{
		Endpoint: net.JoinHostPort("127.0.0.1", fmt.Sprint(port)),
		file:     filepath.Join(dir, "received.jsonl"),
	}
	config, err := filepath.Abs("testdata/otlp-sink.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s.col = startCollectorWith(ctx, t, testenv.CollectorOptions{
		Bin:    bin,
		Config: config,
		Dir:    dir,
		Env:    []string{"SINK_OTLP_ENDPOINT=" + s.Endpoint, "SINK_FILE=" + s.file},
	})
	return s
}

// freeze stops the sink's process (SIGSTOP) until the test ends or thaw is called: a
// backend that accepts connections and never answers.
func (s *sink) freeze(t *testing.T) {
	t.Helper()
	if err := s.col.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// Registered after the collector's own cleanup, so it runs first: a stopped
	// process would not act on the SIGTERM that stops it.
	t.Cleanup(func() { _ = s.col.Signal(syscall.SIGCONT) })
}

func (s *sink) thaw(t *testing.T) {
	t.Helper()
	if err := s.col.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
}

// requests returns every OTLP request written so far, in order of arrival.
func (s *sink) requests(t *testing.T) []pmetric.Metrics {
	t.Helper()
	b, err := os.ReadFile(s.file)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []pmetric.Metrics
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		md, err := (&pmetric.JSONUnmarshaler{}).UnmarshalMetrics(sc.Bytes())
		if err != nil {
			// The last line may still be being written.
			continue
		}
		out = append(out, md)
	}
	return out
}

// otlpPoint is one data point of the hypervisor metric with everything around it.
type otlpPoint struct {
	Resource    map[string]any
	Scope       string
	Description string
	Unit        string
	Type        pmetric.MetricType
	Value       int64
	Attributes  map[string]any
	Retracted   bool
}

// batch is the hypervisor points of one ResourceMetrics: what the receiver emitted in
// one go.
type batch []otlpPoint

// batches flattens requests into the hypervisor points of each ResourceMetrics.
func batches(mds []pmetric.Metrics) []batch {
	var out []batch
	for _, md := range mds {
		for _, rm := range md.ResourceMetrics().All() {
			var b batch
			for _, sm := range rm.ScopeMetrics().All() {
				for _, m := range sm.Metrics().All() {
					if m.Name() != otelMetric || m.Type() != pmetric.MetricTypeGauge {
						continue
					}
					for _, dp := range m.Gauge().DataPoints().All() {
						b = append(b, otlpPoint{
							Resource:    rm.Resource().Attributes().AsRaw(),
							Scope:       sm.Scope().Name(),
							Description: m.Description(),
							Unit:        m.Unit(),
							Type:        m.Type(),
							Value:       intValue(dp),
							Attributes:  dp.Attributes().AsRaw(),
							Retracted:   dp.Flags().NoRecordedValue(),
						})
					}
				}
			}
			if len(b) > 0 {
				out = append(out, b)
			}
		}
	}
	return out
}

// intValue is the point's value, or -1 if it is not an int: the metric is an int gauge.
func intValue(dp pmetric.NumberDataPoint) int64 {
	if dp.ValueType() != pmetric.NumberDataPointValueTypeInt {
		return -1
	}
	return dp.IntValue()
}

func fmtAny(v any) string { return fmt.Sprint(v) }
