package e2e

import (
	"os/exec"
	"strings"
	"testing"
)

// rulesDir holds the shipped alert rules and their promtool tests.
const rulesDir = "deploy/prometheus"

// TestAlertRules runs `promtool check rules` on the shipped rule file and `promtool
// test rules` on its test file, which holds the alerts' scenarios (each fires after its
// period, not before, not for VMs that stop or get detected in time; each emulated VM
// gets the one emulation alert its node's kube-state-metrics allocatable calls for) and
// the README's PromQL examples.
func TestAlertRules(t *testing.T) {
	bin := promtool(t)
	for _, args := range [][]string{
		{"check", "rules", repoFile(t, rulesDir+"/kubevirt-hypervisor-rules.yaml")},
		{"test", "rules", repoFile(t, rulesDir+"/kubevirt-hypervisor-rules_test.yaml")},
	} {
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
			continue
		}
		if !strings.Contains(string(out), "SUCCESS") {
			t.Errorf("promtool %s did not report SUCCESS:\n%s", strings.Join(args, " "), out)
		}
	}
}
