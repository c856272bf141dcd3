package testenv

// Prometheus: a real server with its own storage, scraping given targets or
// scrape configurations, evaluating rule files, answering instant queries.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv/tied"
)

// PrometheusBinary is where Debian's prometheus package installs the server; the
// harness falls back to it when prometheus is not on PATH.
const PrometheusBinary = "/usr/bin/prometheus"

// Prometheus is a real Prometheus server scraping given targets, with its own storage
// in a private directory, listening on loopback.
type Prometheus struct {
	// URL is the server's base address, e.g. http://127.0.0.1:40123.
	URL string
	// LogPath holds the server's output.
	LogPath string

	cmd  *exec.Cmd
	done chan error
}

// PrometheusOptions says how to start a Prometheus server.
type PrometheusOptions struct {
	// Bin is the prometheus binary; "" means prometheus on PATH, else PrometheusBinary.
	Bin string
	// Dir holds the configuration, the TSDB and the log. Required.
	Dir string
	// Targets are host:port addresses whose /metrics are scraped, as one job.
	Targets []string
	// ScrapeConfigs, if set, replaces Targets and Job: the YAML list that goes
	// under scrape_configs, e.g. one with kubernetes_sd_configs.
	ScrapeConfigs string
	// Job is the scrape job's name; "" means "otelcol-kubevirt".
	Job string
	// ScrapeInterval is both the scrape and the rule evaluation interval; 0 means 1s,
	// short so that tests see changes quickly.
	ScrapeInterval time.Duration
	// RuleFiles are loaded as the server's rule files (absolute paths).
	RuleFiles []string
}

// StartPrometheus starts Prometheus on a free loopback port and returns once it
// reports ready. The caller must call Stop.
func StartPrometheus(ctx context.Context, opts PrometheusOptions) (*Prometheus, error) {
	if opts.Dir == "" {
		return nil, errors.New("testenv: PrometheusOptions.Dir is required")
	}
	bin, err := prometheusBinary(opts.Bin)
	if err != nil {
		return nil, err
	}
	if opts.Job == "" {
		opts.Job = "otelcol-kubevirt"
	}
	if opts.ScrapeInterval == 0 {
		opts.ScrapeInterval = time.Second
	}
	configPath := filepath.Join(opts.Dir, "prometheus.yml")
	if err := os.WriteFile(configPath, []byte(prometheusConfig(opts)), 0o600); err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	logPath := filepath.Join(opts.Dir, "prometheus.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin,
		"--config.file="+configPath,
		"--storage.tsdb.path="+filepath.Join(opts.Dir, "data"),
		"--web.listen-address="+addr,
	)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	p := &Prometheus{URL: "http://" + addr, LogPath: logPath, cmd: cmd, done: make(chan error, 1)}
	// Dies with its parent, so that a crashed test leaves no server behind.
	if err := tied.Start(cmd, func(err error) { p.done <- err; logFile.Close() }); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}

	err = wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, func(context.Context) (bool, error) {
		select {
		case err := <-p.done:
			p.done <- err
			return false, fmt.Errorf("prometheus exited: %v\n%s", err, tailFile(logPath, 20))
		default:
		}
		return p.ready(ctx), nil
	})
	if err != nil {
		_ = p.Stop()
		return nil, fmt.Errorf("prometheus did not become ready at %s: %w\n%s", p.URL, err, tailFile(logPath, 20))
	}
	return p, nil
}

func prometheusBinary(bin string) (string, error) {
	if bin != "" {
		return bin, nil
	}
	if path, err := exec.LookPath("prometheus"); err == nil {
		return path, nil
	}
	if _, err := os.Stat(PrometheusBinary); err != nil {
		return "", fmt.Errorf("testenv: prometheus not found on PATH nor at %s (Debian package prometheus; `make deps`)", PrometheusBinary)
	}
	return PrometheusBinary, nil
}

// prometheusConfig renders the server's configuration. Strings are written as JSON
// strings, which YAML reads unchanged whatever they contain.
func prometheusConfig(opts PrometheusOptions) string {
	// Prometheus durations have no fractions ("1.5s" is invalid): write milliseconds.
	interval := fmt.Sprintf("%dms", opts.ScrapeInterval.Milliseconds())
	var b strings.Builder
	fmt.Fprintf(&b, "global:\n  scrape_interval: %s\n  scrape_timeout: %s\n  evaluation_interval: %s\n",
		interval, interval, interval)
	if len(opts.RuleFiles) > 0 {
		b.WriteString("rule_files:\n")
		for _, f := range opts.RuleFiles {
			fmt.Fprintf(&b, "  - %s\n", strconv.Quote(f))
		}
	}
	if opts.ScrapeConfigs != "" {
		b.WriteString("scrape_configs:\n" + opts.ScrapeConfigs)
		return b.String()
	}
	fmt.Fprintf(&b, "scrape_configs:\n  - job_name: %s\n    static_configs:\n      - targets:\n", strconv.Quote(opts.Job))
	for _, t := range opts.Targets {
		fmt.Fprintf(&b, "          - %s\n", strconv.Quote(t))
	}
	return b.String()
}

func (p *Prometheus) ready(ctx context.Context) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL+"/-/ready", nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// Sample is one element of an instant vector.
type Sample struct {
	// Labels include __name__ and the job and instance labels Prometheus attaches.
	Labels map[string]string
	Value  float64
	Time   time.Time
}

// Query evaluates promql at the current time and returns the resulting instant
// vector. A result of another type (scalar, string) is an error.
func (p *Prometheus) Query(ctx context.Context, promql string) ([]Sample, error) {
	u := p.URL + "/api/v1/query?" + url.Values{"query": {promql}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Status    string `json:"status"`
		Error     string `json:"error"`
		ErrorType string `json:"errorType"`
		Data      struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("query %q: %s: %w", promql, resp.Status, err)
	}
	if body.Status != "success" {
		return nil, fmt.Errorf("query %q: %s: %s", promql, body.ErrorType, body.Error)
	}
	if body.Data.ResultType != "vector" {
		return nil, fmt.Errorf("query %q: result is a %s, not a vector", promql, body.Data.ResultType)
	}
	out := make([]Sample, 0, len(body.Data.Result))
	for _, r := range body.Data.Result {
		ts, ok := r.Value[0].(float64)
		str, ok2 := r.Value[1].(string)
		if !ok || !ok2 {
			return nil, fmt.Errorf("query %q: malformed sample value %v", promql, r.Value)
		}
		v, err := strconv.ParseFloat(str, 64)
		if err != nil {
			return nil, fmt.Errorf("query %q: %w", promql, err)
		}
		sec := int64(ts)
		out = append(out, Sample{
			Labels: r.Metric,
			Value:  v,
			Time:   time.Unix(sec, int64((ts-float64(sec))*1e9)),
		})
	}
	return out, nil
}

// Stop ends Prometheus with SIGTERM, then SIGKILL if it does not exit in time. It is
// safe to call more than once.
func (p *Prometheus) Stop() error {
	select {
	case err := <-p.done:
		p.done <- err
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.done <- err
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			return err
		}
		return nil
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		return errors.New("prometheus did not stop on SIGTERM within 10s; killed")
	}
}
