package testenv

// Collector: the built otelcol-kubevirt as a process, and its Prometheus
// endpoint. FreePort picks the loopback ports for it and for Prometheus.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv/scrape"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv/tied"
)

// CollectorBinEnv names the environment variable that points tests at the built
// collector; `make test` sets it to bin/otelcol-kubevirt.
const CollectorBinEnv = "OTELCOL_KUBEVIRT_BIN"

// ShippedConfig is the collector configuration the distribution ships, relative to the
// repository root.
const ShippedConfig = "cmd/otelcol-kubevirt/config.yaml"

// Collector is a running otelcol-kubevirt process serving Prometheus metrics.
type Collector struct {
	// MetricsURL is the Prometheus exporter's /metrics address.
	MetricsURL string
	// HealthURL is the health_check extension's address, where the configuration has
	// one (moved to a free loopback port); "" otherwise.
	HealthURL string
	// LogPath holds the collector's output.
	LogPath string

	cmd  *exec.Cmd
	done chan error
}

// CollectorOptions says how to start a collector.
type CollectorOptions struct {
	// Bin is the collector binary.
	Bin string
	// Config is the configuration file; "" means the shipped one.
	Config string
	// ExtraConfigs are merged over Config, in order (the collector's repeated --config),
	// e.g. the shipped otlp.yaml overlay.
	ExtraConfigs []string
	// Env is added to the collector's environment, e.g. K8S_NODE_NAME.
	Env []string
	// Dir receives the log file.
	Dir string
	// Endpoint is where the Prometheus exporter listens; "" picks a free loopback port.
	Endpoint string
}

// StartCollector starts the collector with PROMETHEUS_ENDPOINT at opts.Endpoint (by
// default a free loopback port), and the health_check extension, if the configuration
// has one, on a free loopback port; it returns once the Prometheus endpoint answers.
func StartCollector(ctx context.Context, opts CollectorOptions) (*Collector, error) {
	if opts.Config == "" {
		path, err := findRepoPath(ShippedConfig)
		if err != nil {
			return nil, err
		}
		opts.Config = path
	}
	endpoint := opts.Endpoint
	if endpoint == "" {
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		endpoint = net.JoinHostPort("127.0.0.1", fmt.Sprint(port))
	}
	logPath := filepath.Join(opts.Dir, "collector.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	args := []string{"--config", opts.Config}
	health := ""
	cfg, err := os.ReadFile(opts.Config)
	if err != nil {
		return nil, err
	}
	if bytes.Contains(cfg, []byte("health_check:")) {
		// The shipped health_check (and those of configurations made from it) listens
		// on 0.0.0.0:13133, a fixed port that a second collector on this host (the soak
		// runs three) could not bind.
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		health = net.JoinHostPort("127.0.0.1", fmt.Sprint(port))
		args = append(args, "--set=extensions::health_check::endpoint="+health)
	}
	for _, c := range opts.ExtraConfigs {
		args = append(args, "--config", c)
	}
	cmd := exec.Command(opts.Bin, args...)
	cmd.Env = append(append(os.Environ(), opts.Env...), "PROMETHEUS_ENDPOINT="+endpoint)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	c := &Collector{MetricsURL: "http://" + endpoint + "/metrics", LogPath: logPath, cmd: cmd, done: make(chan error, 1)}
	if health != "" {
		c.HealthURL = "http://" + health + "/"
	}
	// Dies with its parent, so that a crashed test leaves no collector behind.
	if err := tied.Start(cmd, func(err error) { c.done <- err; logFile.Close() }); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting %s: %w", opts.Bin, err)
	}

	err = wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, func(context.Context) (bool, error) {
		select {
		case err := <-c.done:
			c.done <- err
			return false, fmt.Errorf("collector exited: %v\n%s", err, tailFile(logPath, 20))
		default:
		}
		_, err := c.Scrape(ctx)
		return err == nil, nil
	})
	if err != nil {
		_ = c.Stop()
		return nil, fmt.Errorf("collector did not serve %s: %w\n%s", c.MetricsURL, err, tailFile(logPath, 20))
	}
	return c, nil
}

// Scrape returns the Prometheus exposition the collector serves.
func (c *Collector) Scrape(ctx context.Context) (string, error) {
	return scrape.Text(ctx, c.MetricsURL)
}

// Lines returns the scraped sample lines whose metric name is name, without comments.
func (c *Collector) Lines(ctx context.Context, name string) ([]string, error) {
	return scrape.Lines(ctx, c.MetricsURL, name)
}

// PID is the collector's process id, e.g. for reading its CPU time from /proc.
func (c *Collector) PID() int {
	return c.cmd.Process.Pid
}

// Signal sends sig to the collector, e.g. SIGSTOP to play a backend that accepts
// connections and never answers.
func (c *Collector) Signal(sig syscall.Signal) error {
	return c.cmd.Process.Signal(sig)
}

// Stop ends the collector with SIGTERM, then SIGKILL if it does not exit in time.
func (c *Collector) Stop() error {
	if c.cmd.ProcessState != nil {
		return nil
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-c.done:
		c.done <- err
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			return err
		}
		return nil
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		return errors.New("collector did not stop on SIGTERM within 10s; killed")
	}
}

// FreePort returns a TCP port on loopback that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
