package e2e

import (
	"bufio"
	"bytes"
	"context"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv"
)

// noiseLabel matches the labels the Prometheus exporter adds when it is not configured
// for the exact line format: job and instance (from service.name and
// service.instance.id resource attributes) and the otel_scope_* labels.
var noiseLabel = regexp.MustCompile(`[{,](job|instance|otel_scope_[a-z_]+)="`)

// checkExposition asserts what the whole endpoint serves beyond the hypervisor lines
// themselves: a gauge with help text, no target_info, no labels but the metric's own,
// and nothing `promtool check metrics` objects to.
func checkExposition(ctx context.Context, t *testing.T, col *testenv.Collector) {
	t.Helper()
	body, err := col.Scrape(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"# HELP " + metric + " ", "# TYPE " + metric + " gauge\n"} {
		if !strings.Contains(body, want) {
			t.Errorf("exposition lacks %q:\n%s", want, body)
		}
	}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		l := sc.Text()
		if strings.Contains(l, "target_info") {
			t.Errorf("exposition has target_info: %q", l)
		}
		if !strings.HasPrefix(l, "#") && noiseLabel.MatchString(l) {
			t.Errorf("sample carries a label the exporter added: %q", l)
		}
	}
	if out := promtoolCheckMetrics(t, body); out != "" {
		t.Errorf("promtool check metrics reports:\n%s\non:\n%s", out, body)
	}
}

// promtoolCheckMetrics runs `promtool check metrics` on an exposition and returns what
// it reports; it reports nothing on a clean one.
func promtoolCheckMetrics(t *testing.T, exposition string) string {
	t.Helper()
	cmd := exec.Command(promtool(t), "check", "metrics")
	cmd.Stdin = strings.NewReader(exposition)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Fatal(err)
		}
		return strings.TrimSpace(out.String()) + "\n(" + err.Error() + ")"
	}
	return strings.TrimSpace(out.String())
}

// promtool is Debian's promtool (package prometheus), which `make deps` installs.
func promtool(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool (Debian package prometheus; `make deps`): %v", err)
	}
	return path
}

// TestPromtoolCheckMetricsCatchesProblems keeps checkExposition honest: the same check
// reports a counter without _total and a metric without help text.
func TestPromtoolCheckMetricsCatchesProblems(t *testing.T) {
	bad := "# TYPE requests counter\nrequests 1\n"
	if out := promtoolCheckMetrics(t, bad); out == "" {
		t.Fatalf("promtool check metrics accepted %q", bad)
	}
}
