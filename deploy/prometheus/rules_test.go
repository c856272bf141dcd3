// Package alertrules holds only tests: they check the alert rules in this directory
// against KubeVirt's conventions for alerts, against their runbooks in docs/runbooks,
// against the PrometheusRule generated from them, and (with the Prometheus Operator's
// CRD) against a real kube-apiserver. promtool tests the rules' behaviour
// (internal/e2e/rules_test.go runs kubevirt-hypervisor-rules_test.yaml).
package alertrules

import (
	"os"
	"testing"

	"sigs.k8s.io/yaml"
)

const rulesFile = "kubevirt-hypervisor-rules.yaml"

// ruleFile is a Prometheus rule file, as much of it as the tests read. Decoding is
// strict, so a key the tests do not know fails them rather than going unchecked.
type ruleFile struct {
	Groups []ruleGroup `json:"groups"`
}

type ruleGroup struct {
	Name  string `json:"name"`
	Rules []rule `json:"rules"`
}

type rule struct {
	Alert       string            `json:"alert"`
	Record      string            `json:"record"`
	Expr        string            `json:"expr"`
	For         string            `json:"for"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

func readRules(t *testing.T) (raw []byte, rf ruleFile) {
	t.Helper()
	raw, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(raw, &rf); err != nil {
		t.Fatalf("%s: %v", rulesFile, err)
	}
	return raw, rf
}

// alerts returns the alerting rules of rf, failing if there are none.
func alerts(t *testing.T, rf ruleFile) []rule {
	t.Helper()
	var out []rule
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				out = append(out, r)
			}
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s holds no alert", rulesFile)
	}
	return out
}
