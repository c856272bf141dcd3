package alertrules

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// runbookURLBase is where runbook_url points: the runbooks in docs/runbooks on the
// repository's main branch, a URL that stays valid as long as the file exists.
const runbookURLBase = "https://github.com/otelcol-kubevirt/otelcol-kubevirt/blob/main/docs/runbooks/"

// vmSeries is the series an alert about one VM selects.
const vmSeries = "kubevirt_vmi_hypervisor_info"

// conventionProblems lists how alert a departs from the labels and annotations
// KubeVirt's own alerts carry (kubevirt/kubevirt pkg/monitoring/rules/alerts): a
// severity, an operator_health_impact, kubernetes_operator_part_of=kubevirt so that
// consoles group it with KubeVirt's alerts, our component's name, a summary, a
// description and a runbook_url. Like KubeVirt's VM alerts, one about a single VM is
// a warning that leaves the operator's health alone.
func conventionProblems(a rule) []string {
	var p []string
	want := func(ok bool, format string, args ...any) {
		if !ok {
			p = append(p, fmt.Sprintf(format, args...))
		}
	}
	sev, impact := a.Labels["severity"], a.Labels["operator_health_impact"]
	want(slices.Contains([]string{"critical", "warning", "info"}, sev), "severity %q, want critical, warning or info", sev)
	want(slices.Contains([]string{"critical", "warning", "none"}, impact), "operator_health_impact %q, want critical, warning or none", impact)
	want(a.Labels["kubernetes_operator_part_of"] == "kubevirt", "kubernetes_operator_part_of %q, want kubevirt", a.Labels["kubernetes_operator_part_of"])
	want(a.Labels["kubernetes_operator_component"] == "otelcol-kubevirt", "kubernetes_operator_component %q, want otelcol-kubevirt", a.Labels["kubernetes_operator_component"])
	want(a.Annotations["summary"] != "", "no summary annotation")
	want(a.Annotations["description"] != "", "no description annotation")
	url := runbookURLBase + a.Alert + ".md"
	want(a.Annotations["runbook_url"] == url, "runbook_url %q, want %q", a.Annotations["runbook_url"], url)
	if strings.Contains(a.Expr, vmSeries) {
		want(sev == "warning" && impact == "none",
			"an alert about one VM (its expr selects %s) must be severity warning, operator_health_impact none; got %s, %s", vmSeries, sev, impact)
	}
	return p
}

func TestAlertsFollowKubeVirtConventions(t *testing.T) {
	_, rf := readRules(t)
	for _, a := range alerts(t, rf) {
		for _, p := range conventionProblems(a) {
			t.Errorf("%s: %s", a.Alert, p)
		}
	}
}

// TestConventionProblemsCatchBreakage keeps the check above honest: each broken copy
// of a conforming alert is caught, for the reason broken.
func TestConventionProblemsCatchBreakage(t *testing.T) {
	good := func() rule {
		return rule{
			Alert: "SomeVMAlert",
			Expr:  vmSeries + `{hypervisor_type="qemu-tcg"}`,
			Labels: map[string]string{
				"severity": "warning", "operator_health_impact": "none",
				"kubernetes_operator_part_of": "kubevirt", "kubernetes_operator_component": "otelcol-kubevirt",
			},
			Annotations: map[string]string{"summary": "s", "description": "d", "runbook_url": runbookURLBase + "SomeVMAlert.md"},
		}
	}
	if p := conventionProblems(good()); len(p) > 0 {
		t.Fatalf("a conforming alert was refused: %q", p)
	}
	for name, tc := range map[string]struct {
		breakIt func(*rule)
		want    string
	}{
		"a VM alert that pages":              {func(r *rule) { r.Labels["severity"] = "critical" }, "must be severity warning"},
		"a VM alert that harms the operator": {func(r *rule) { r.Labels["operator_health_impact"] = "warning" }, "must be severity warning"},
		"no impact label":                    {func(r *rule) { delete(r.Labels, "operator_health_impact") }, "operator_health_impact \"\""},
		"another product":                    {func(r *rule) { r.Labels["kubernetes_operator_part_of"] = "otel" }, "kubernetes_operator_part_of"},
		"no component":                       {func(r *rule) { delete(r.Labels, "kubernetes_operator_component") }, "kubernetes_operator_component"},
		"a runbook of another alert":         {func(r *rule) { r.Annotations["runbook_url"] = runbookURLBase + "Other.md" }, "runbook_url"},
		"no description":                     {func(r *rule) { delete(r.Annotations, "description") }, "no description"},
	} {
		r := good()
		tc.breakIt(&r)
		p := conventionProblems(r)
		if !slices.ContainsFunc(p, func(s string) bool { return strings.Contains(s, tc.want) }) {
			t.Errorf("%s: problems %q, want one mentioning %q", name, p, tc.want)
		}
	}
}
