package operator

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestREADMENamesOperatorVersion: the README says which Operator release the example
// was validated against; it must be the one the test validates against.
func TestREADMENamesOperatorVersion(t *testing.T) {
	version := operatorVersion(t)
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "OpenTelemetry Operator "+version) {
		t.Errorf("README.md does not say %q, the release tools/crds/go.mod pins", "OpenTelemetry Operator "+version)
	}
}

const (
	operatorModule   = "github.com/open-telemetry/opentelemetry-operator"
	operatorToolsDir = "../../tools/crds"
)

var operatorRequire = regexp.MustCompile(`(?m)^(?:require )?\s*` + regexp.QuoteMeta(operatorModule) + ` (v\S+)$`)

// operatorVersion is the Operator release tools/crds/go.mod pins.
func operatorVersion(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(operatorToolsDir + "/go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := operatorRequire.FindSubmatch(data)
	if m == nil {
		t.Fatalf("%s/go.mod has no line %q", operatorToolsDir, "require "+operatorModule+" <version>")
	}
	return string(m[1])
}
