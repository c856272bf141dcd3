package alertrules

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

const runbooksDir = "../../docs/runbooks"

// runbookSections are the sections of a runbook, in order, as KubeVirt's runbooks
// (kubevirt/monitoring docs/runbooks) have them.
var runbookSections = []string{"Meaning", "Impact", "Diagnosis", "Mitigation"}

// maxProse is the longest line of prose outside code blocks and links, as in
// KubeVirt's runbooks.
const maxProse = 80

// humanDuration says d as a runbook does: "10 minutes", "1 hour".
func humanDuration(d time.Duration) string {
	n, unit := int(d/time.Minute), "minute"
	if d%time.Hour == 0 {
		n, unit = int(d/time.Hour), "hour"
	}
	if n != 1 {
		unit += "s"
	}
	return fmt.Sprintf("%d %s", n, unit)
}

// runbookProblems lists how md, the runbook of alert a, departs from the shape of
// KubeVirt's runbooks: titled with the alert's name, the four sections in order, a
// Meaning that states the alert's `for` duration, a Diagnosis with commands, code
// blocks that name their language, prose lines of at most maxProse characters.
func runbookProblems(a rule, md string) []string {
	var p []string
	lines := strings.Split(md, "\n")
	if lines[0] != "# "+a.Alert {
		p = append(p, fmt.Sprintf("first line %q, want %q", lines[0], "# "+a.Alert))
	}
	var headings []string
	sections := map[string]string{}
	current, inCode := "", false
	for i, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), "```") {
			if !inCode && strings.TrimSpace(l) == "```" {
				p = append(p, fmt.Sprintf("line %d: a code block without a language", i+1))
			}
			inCode = !inCode
		} else if !inCode && len(l) > maxProse && !strings.Contains(l, "](") {
			p = append(p, fmt.Sprintf("line %d: %d characters of prose, at most %d", i+1, len(l), maxProse))
		}
		if !inCode && strings.HasPrefix(l, "## ") {
			current = strings.TrimPrefix(l, "## ")
			headings = append(headings, current)
			continue
		}
		sections[current] += l + "\n"
	}
	if inCode {
		p = append(p, "a code block is not closed")
	}
	if !slices.Equal(headings, runbookSections) {
		p = append(p, fmt.Sprintf("sections %q, want %q", headings, runbookSections))
	}
	if d, err := time.ParseDuration(a.For); err == nil && d > 0 {
		if h := humanDuration(d); !strings.Contains(sections["Meaning"], h) {
			p = append(p, fmt.Sprintf("Meaning does not say %q, the alert's `for: %s`", h, a.For))
		}
	}
	if !strings.Contains(sections["Diagnosis"], "```bash") {
		p = append(p, "Diagnosis has no bash commands")
	}
	return p
}

// TestEveryAlertHasItsRunbook: the file runbook_url points at exists for every alert
// and has the runbook's shape, and every runbook belongs to an alert.
func TestEveryAlertHasItsRunbook(t *testing.T) {
	_, rf := readRules(t)
	names := map[string]bool{}
	for _, a := range alerts(t, rf) {
		names[a.Alert+".md"] = true
		md, err := os.ReadFile(filepath.Join(runbooksDir, a.Alert+".md"))
		if err != nil {
			t.Errorf("%s: no runbook: %v", a.Alert, err)
			continue
		}
		for _, p := range runbookProblems(a, string(md)) {
			t.Errorf("docs/runbooks/%s.md: %s", a.Alert, p)
		}
	}
	files, err := filepath.Glob(filepath.Join(runbooksDir, "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if !names[filepath.Base(f)] {
			t.Errorf("docs/runbooks/%s belongs to no alert of %s", filepath.Base(f), rulesFile)
		}
	}
}

// TestRunbookProblemsCatchBreakage keeps the check above honest.
func TestRunbookProblemsCatchBreakage(t *testing.T) {
	a := rule{Alert: "SomeAlert", For: "30m"}
	good := "# SomeAlert\n\n## Meaning\n\nFires after 30 minutes.\n\n## Impact\n\nNone.\n\n" +
		"## Diagnosis\n\n```bash\n$ kubectl get vmi -A\n```\n\n## Mitigation\n\nFix it.\n"
	if p := runbookProblems(a, good); len(p) > 0 {
		t.Fatalf("a conforming runbook was refused: %q", p)
	}
	for name, tc := range map[string]struct{ md, want string }{
		"another title":         {strings.Replace(good, "# SomeAlert", "# Other", 1), "first line"},
		"a section missing":     {strings.Replace(good, "## Impact\n\nNone.\n\n", "", 1), "sections"},
		"sections out of order": {strings.Replace(strings.Replace(good, "## Impact", "## X", 1), "## Meaning", "## Impact", 1), "sections"},
		"another duration":      {strings.Replace(good, "30 minutes", "10 minutes", 1), "Meaning does not say \"30 minutes\""},
		"no commands":           {strings.Replace(good, "```bash", "```text", 1), "no bash commands"},
		"a bare code block":     {strings.Replace(good, "```bash", "```", 1), "without a language"},
		"a long line":           {strings.Replace(good, "Fix it.", strings.Repeat("word ", 20), 1), "characters of prose"},
	} {
		p := runbookProblems(a, tc.md)
		if !slices.ContainsFunc(p, func(s string) bool { return strings.Contains(s, tc.want) }) {
			t.Errorf("%s: problems %q, want one mentioning %q", name, p, tc.want)
		}
	}
	if got := humanDuration(time.Hour); got != "1 hour" {
		t.Errorf("humanDuration(1h) = %q", got)
	}
}
