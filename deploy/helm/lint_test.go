package helmchart

import (
	"strings"
	"testing"
)

// TestHelmLint lints the chart as `helm lint --strict` does, with its default values
// and with every optional object on, and checks that lint does fail on a broken value.
func TestHelmLint(t *testing.T) {
	helm := helmBin(t)
	for name, args := range map[string][]string{
		"Defaults":               nil,
		"MonitorsAndRules":       {"--set", "serviceMonitor.enabled=true,podMonitor.enabled=true,prometheusRule.enabled=true"},
		"NoRBACNoServiceAccount": {"--set", "rbac.create=false,serviceAccount.create=false,serviceAccount.name=collector"},
	} {
		t.Run(name, func(t *testing.T) {
			out := run(t, nil, helm, append([]string{"lint", "--strict", chartDir}, args...)...)
			if !strings.Contains(string(out), "1 chart(s) linted, 0 chart(s) failed") {
				t.Errorf("helm lint:\n%s", out)
			}
		})
	}
	// The check above can fail: a value the templates cannot render fails lint.
	out, _, err := runErr(t, nil, helm, "lint", "--strict", chartDir, "--set", "config=not-a-map")
	if err == nil || !strings.Contains(string(out), "[ERROR]") {
		t.Errorf("helm lint accepted config=not-a-map (%v):\n%s", err, out)
	}
}
