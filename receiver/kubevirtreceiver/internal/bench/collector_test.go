package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv"
)

// collector is a running otelcol-kubevirt process, built by `make build`.
type collector struct {
	*testenv.Collector
	pid int
}

// One collector runs at a time, so that a benchmark's CPU figures are not shared with
// an idle collector left over from the previous one.
var (
	current    *collector
	currentKey string
)

// collectorFor returns the running collector for key, stopping any other first and
// starting it with start.
func collectorFor(b *testing.B, key string, start func() (*collector, error)) *collector {
	b.Helper()
	if currentKey == key {
		return current
	}
	if current != nil {
		if err := current.Stop(); err != nil {
			b.Fatal(err)
		}
		current, currentKey = nil, ""
	}
	c, err := start()
	var skip skipError
	if errors.As(err, &skip) {
		b.Skip(skip.Error())
	}
	if err != nil {
		b.Fatal(err)
	}
	atExit(c.Stop)
	current, currentKey = c, key
	return c
}

// startCollector runs the built collector with a configuration derived from the
// shipped one (see benchConfig), watching node of c with libvirt at uri.
func startCollector(c *cluster, node, uri string) (*collector, error) {
	bin, err := collectorBin()
	if err != nil {
		return nil, err
	}
	return startCollectorWith(c, node, map[string]any{"source": "uri", "uri": uri}, bin)
}

// collectorBin is the built collector, $OTELCOL_KUBEVIRT_BIN.
func collectorBin() (string, error) {
	bin := os.Getenv(testenv.CollectorBinEnv)
	if bin == "" {
		return "", skipError{fmt.Errorf("%s is not set; `make bench` builds the collector and sets it", testenv.CollectorBinEnv)}
	}
	return bin, nil
}

// startCollectorWith is startCollector with the receiver's libvirt settings and the
// collector binary bin.
func startCollectorWith(c *cluster, node string, libvirt map[string]any, bin string) (*collector, error) {
	dir, err := tempDir()
	if err != nil {
		return nil, err
	}
	cfg, err := benchConfig(dir, libvirt)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	col, err := testenv.StartCollector(ctx, testenv.CollectorOptions{
		Bin: bin, Config: cfg, Dir: dir,
		Env: []string{"K8S_NODE_NAME=" + node, "KUBECONFIG=" + c.api.KubeconfigPath},
	})
	if err != nil {
		return nil, err
	}
	return &collector{Collector: col, pid: col.PID()}, nil
}

// benchConfig writes the shipped collector configuration with what the benchmarks
// need changed, and returns its path. Everything else (the pipeline, the Prometheus
// exporter's settings, collection_interval) stays as shipped, so that a change there
// shows up in the figures:
//
//   - libvirt as given: source "uri" with one libvirt (a test-driver node, or a
//     libvirtd with real guests) for all VMIs, or source "launcher" with a pods_dir;
//   - auth_type kubeConfig: the API server is the harness's, reached via $KUBECONFIG.
func benchConfig(dir string, libvirt map[string]any) (string, error) {
	shipped, err := os.ReadFile(filepath.Join(repoRoot(), testenv.ShippedConfig))
	if err != nil {
		return "", err
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(shipped, &cfg); err != nil {
		return "", err
	}
	rcv, ok := dig(cfg, "receivers", "kubevirt")
	if !ok {
		return "", errors.New("shipped config has no receivers::kubevirt")
	}
	rcv["auth_type"] = "kubeConfig"
	rcv["libvirt"] = libvirt
	out, err := yaml.Marshal(cfg)
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "shipped.yaml")
	return path, os.WriteFile(path, out, 0o600)
}

// shippedCollectionInterval is the receiver's collection_interval in the shipped
// configuration.
func shippedCollectionInterval() (time.Duration, error) {
	shipped, err := os.ReadFile(filepath.Join(repoRoot(), testenv.ShippedConfig))
	if err != nil {
		return 0, err
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(shipped, &cfg); err != nil {
		return 0, err
	}
	rcv, _ := dig(cfg, "receivers", "kubevirt")
	s, _ := rcv["collection_interval"].(string)
	return time.ParseDuration(s)
}

// dig returns the map at path in cfg.
func dig(cfg map[string]any, path ...string) (map[string]any, bool) {
	for _, p := range path {
		next, ok := cfg[p].(map[string]any)
		if !ok {
			return nil, false
		}
		cfg = next
	}
	return cfg, true
}

// repoRoot is the repository root: `go test` runs in the package directory.
func repoRoot() string {
	return filepath.Join("..", "..", "..", "..")
}

// infoLine is the exact line the endpoint shows for a running VMI.
func infoLine(ns, name, node, typ string) string {
	return fmt.Sprintf(`kubevirt_vmi_hypervisor_info{hypervisor_type=%q,name=%q,namespace=%q,node=%q} 1`, typ, name, ns, node)
}

// reportedType is the hypervisor_type of the i-th domain testDriverNode writes.
func reportedType(i int) string {
	return []string{"kvm", "qemu-tcg", "mshv"}[i%3]
}

// countLines returns how many lines of body start with prefix.
func countLines(body, prefix string) int {
	n := 0
	for line := range strings.Lines(body) {
		if strings.HasPrefix(line, prefix) {
			n++
		}
	}
	return n
}
