package alertrules

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"reflect"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite prometheusrule.yaml from "+rulesFile)

const (
	prometheusRuleFile = "prometheusrule.yaml"
	kustomizationFile  = "kustomization.yaml"
)

// prometheusRuleHeader precedes the rule file's groups in prometheusrule.yaml. The
// object needs the Prometheus Operator's CRD, which a cluster may not have, so it is
// not part of deploy/kubernetes: applying that must not fail for want of it.
const prometheusRuleHeader = `# Generated from ` + rulesFile + ` by
#   go test ./deploy/prometheus -run TestPrometheusRuleIsRulesFile -update
# Do not edit by hand; a test fails when the two differ.
#
# The alert rules for the Prometheus Operator (its CRD, monitoring.coreos.com/v1,
# must be installed). After kubectl apply -k deploy/kubernetes (the namespace):
#   kubectl apply -k deploy/prometheus
# and give it the labels your Prometheus's ruleSelector asks for (README, "Alerts").
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: otelcol-kubevirt
  namespace: otelcol-kubevirt
  labels:
    app.kubernetes.io/name: otelcol-kubevirt
spec:
`

// renderPrometheusRule returns prometheusrule.yaml for the rule file rules: its text
// from `groups:` on, indented under spec, comments included. The text rather than a
// re-encoding, so that the rules keep their layout and comments, and so that a Helm
// chart can build the same object from the same file
// (spec: {{ .Files.Get "..." | nindent 2 }}; Helm does not expand the {{ $labels }}
// templates of a file it reads).
func renderPrometheusRule(rules []byte) ([]byte, error) {
	lines := strings.SplitAfter(string(rules), "\n")
	start := -1
	for i, l := range lines {
		trimmed := strings.TrimSpace(l)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		if strings.TrimRight(l, " \t\r\n") != "groups:" {
			return nil, errors.New("the first key of " + rulesFile + " must be groups:, got " + strings.TrimSpace(l))
		}
		start = i
		break
	}
	if start < 0 {
		return nil, errors.New(rulesFile + " has no groups:")
	}
	var b bytes.Buffer
	b.WriteString(prometheusRuleHeader)
	for _, l := range lines[start:] {
		if strings.TrimSpace(l) == "" {
			b.WriteString(strings.TrimLeft(l, " \t")) // no trailing blanks, in block scalars or out
			continue
		}
		b.WriteString("  " + l)
	}
	return b.Bytes(), nil
}

// TestPrometheusRuleIsRulesFile keeps prometheusrule.yaml from drifting from the rule
// file: it must be exactly what -update writes, and its spec must decode to the very
// same groups as the rule file.
func TestPrometheusRuleIsRulesFile(t *testing.T) {
	raw, _ := readRules(t)
	rendered, err := renderPrometheusRule(raw)
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(prometheusRuleFile, rendered, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(prometheusRuleFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, rendered) {
		t.Errorf("deploy/prometheus/%s is out of date with %s; run: go test ./deploy/prometheus -run TestPrometheusRuleIsRulesFile -update",
			prometheusRuleFile, rulesFile)
	}

	var obj struct {
		APIVersion string         `json:"apiVersion"`
		Kind       string         `json:"kind"`
		Metadata   map[string]any `json:"metadata"`
		Spec       map[string]any `json:"spec"`
	}
	if err := yaml.UnmarshalStrict(got, &obj); err != nil {
		t.Fatalf("%s: %v", prometheusRuleFile, err)
	}
	if obj.APIVersion != "monitoring.coreos.com/v1" || obj.Kind != "PrometheusRule" {
		t.Errorf("%s is a %s %s, want a monitoring.coreos.com/v1 PrometheusRule", prometheusRuleFile, obj.APIVersion, obj.Kind)
	}
	var rules map[string]any
	if err := yaml.Unmarshal(raw, &rules); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(obj.Spec, rules) {
		t.Errorf("the spec of %s decodes differently from %s", prometheusRuleFile, rulesFile)
	}
}

// TestRenderPrometheusRuleRefusesOtherKeys: anything before groups: (a
// rule file has no other top-level key today) would silently fall out of the spec.
func TestRenderPrometheusRuleRefusesOtherKeys(t *testing.T) {
	if _, err := renderPrometheusRule([]byte("# c\nnamespace: x\ngroups:\n  - name: g\n")); err == nil {
		t.Error("a key before groups: was accepted")
	}
	if _, err := renderPrometheusRule([]byte("# only a comment\n")); err == nil {
		t.Error("a file without groups: was accepted")
	}
	out, err := renderPrometheusRule([]byte("# c\ngroups:\n  - name: g\n    rules:\n      - alert: A\n        expr: |\n          up\n\n          == 0\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := prometheusRuleHeader + "  groups:\n    - name: g\n      rules:\n        - alert: A\n          expr: |\n            up\n\n            == 0\n"
	if string(out) != want {
		t.Errorf("rendered\n%s\nwant\n%s", out, want)
	}
}

// TestKustomizationListsThePrometheusRule: `kubectl apply -k deploy/prometheus`
// applies the PrometheusRule and nothing else (the rule file is not a Kubernetes
// object).
func TestKustomizationListsThePrometheusRule(t *testing.T) {
	raw, err := os.ReadFile(kustomizationFile)
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		APIVersion string   `json:"apiVersion"`
		Kind       string   `json:"kind"`
		Resources  []string `json:"resources"`
	}
	if err := yaml.UnmarshalStrict(raw, &k); err != nil {
		t.Fatalf("%s: %v", kustomizationFile, err)
	}
	if k.Kind != "Kustomization" || !reflect.DeepEqual(k.Resources, []string{prometheusRuleFile}) {
		t.Errorf("%s: kind %q, resources %q; want a Kustomization of [%s]", kustomizationFile, k.Kind, k.Resources, prometheusRuleFile)
	}
}
