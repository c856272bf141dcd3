package operator

import (
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/runtime"
)

const (
	shippedConfigPath = "../../cmd/otelcol-kubevirt/config.yaml"
	healthCheck       = "health_check"
	healthPort        = 13133
)

// operatorPort is how the Operator reads a port out of an endpoint: the first ":<digits>",
// so that "${env:PROMETHEUS_ENDPOINT:-0.0.0.0:9464}" gives 9464. It names the container
// ports and the probes after it.
var operatorPort = regexp.MustCompile(`:(\d+)`)

func endpointPort(t *testing.T, endpoint string) int32 {
	t.Helper()
	m := operatorPort.FindStringSubmatch(endpoint)
	if m == nil {
		t.Fatalf("no port in endpoint %q", endpoint)
	}
	p, err := strconv.ParseInt(m[1], 10, 32)
	if err != nil {
		t.Fatalf("endpoint %q: %v", endpoint, err)
	}
	return int32(p)
}

// TestConfigIsShippedConfig keeps the inline config from drifting from the one the
// distribution ships: it must be cmd/otelcol-kubevirt/config.yaml, section for
// section, plus the health_check extension while the shipped config has none. Once the
// shipped config has its own health_check, the Operator's must be that very one.
func TestConfigIsShippedConfig(t *testing.T) {
	var shipped map[string]any
	readYAML(t, shippedConfigPath, &shipped)
	got := loadCollector(t).Config

	want := runtime.DeepCopyJSON(shipped)
	if _, ok := nested(want, "extensions", healthCheck); !ok {
		hc, ok := nested(got, "extensions", healthCheck)
		if !ok {
			t.Fatalf("the OpenTelemetryCollector's config has no extensions.%s", healthCheck)
		}
		setNested(want, hc, "extensions", healthCheck)
		exts, _ := nested(want, "service", "extensions")
		list, _ := exts.([]any)
		setNested(want, append(list, healthCheck), "service", "extensions")
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("the OpenTelemetryCollector's config is not %s plus %s (-want +got):\n%s", shippedConfigPath, healthCheck, d)
	}
}

// TestConfigPortsAndProbes: the ports the Operator reads from the config are the ones
// spec.ports names: the exporter's is "metrics" (the name scrape configurations
// select), the health_check's is "health"; and the health_check is enabled, without
// which the Operator gives the container no probes.
func TestConfigPortsAndProbes(t *testing.T) {
	spec := loadCollector(t)
	cfg := spec.Config

	exts, _ := nested(cfg, "service", "extensions")
	if list, _ := exts.([]any); !slices.Contains(list, any(healthCheck)) {
		t.Errorf("service.extensions = %v, want %s in it", exts, healthCheck)
	}
	for _, c := range []struct {
		portName string
		want     int32
		path     []string
	}{
		{"metrics", 9464, []string{"exporters", "prometheus", "endpoint"}},
		{"health", healthPort, []string{"extensions", healthCheck, "endpoint"}},
	} {
		v, _ := nested(cfg, c.path...)
		endpoint, _ := v.(string)
		port := endpointPort(t, endpoint)
		if port != c.want {
			t.Errorf("%s = %q: port %d, want %d", strings.Join(c.path, "."), endpoint, port, c.want)
		}
		p, ok := portNamed(spec.Ports, c.portName)
		if !ok || p.Port != port {
			t.Errorf("spec.ports has %+v for %q, want port %d (from %s)", p, c.portName, port, strings.Join(c.path, "."))
		}
	}
	if path, _ := nested(cfg, "extensions", healthCheck, "path"); path != nil && path != "/" {
		t.Errorf("extensions.%s.path = %v; the Operator's probes and the DaemonSet's use /", healthCheck, path)
	}
}

// envRef is the collector's ${env:NAME} and ${env:NAME:-default}.
var envRef = regexp.MustCompile(`\$\{env:([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}`)

// TestConfigEnvIsSet: every ${env:X} without a default has X in the container's env.
func TestConfigEnvIsSet(t *testing.T) {
	data, err := os.ReadFile(collectorFile)
	if err != nil {
		t.Fatal(err)
	}
	spec := loadCollector(t)
	var names []string
	for _, e := range spec.Env {
		names = append(names, e.Name)
	}
	required := 0
	for _, m := range envRef.FindAllStringSubmatch(string(data), -1) {
		if m[2] != "" {
			continue
		}
		required++
		if !slices.Contains(names, m[1]) {
			t.Errorf("the config needs $%s, which spec.env (%v) does not set", m[1], names)
		}
	}
	if required == 0 {
		t.Error("no ${env:X} without default found; K8S_NODE_NAME at least should be one")
	}
}

// nested returns m[path[0]][path[1]]...
func nested(m map[string]any, path ...string) (any, bool) {
	var v any = m
	for _, k := range path {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = mm[k]; !ok {
			return nil, false
		}
	}
	return v, true
}

// setNested sets m[path[0]][path[1]]... = v, making the maps on the way.
func setNested(m map[string]any, v any, path ...string) {
	for _, k := range path[:len(path)-1] {
		next, ok := m[k].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[k] = next
		}
		m = next
	}
	m[path[len(path)-1]] = v
}
