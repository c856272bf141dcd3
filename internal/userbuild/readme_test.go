package userbuild

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReadmeQuotesTheTestedBuilderConfig keeps README.md's "Add the receiver to your
// own collector" to what TestUserBuiltCollectorServesTheLine builds: every component
// line and cgo_enabled of the builder config, and the ocb version.
func TestReadmeQuotesTheTestedBuilderConfig(t *testing.T) {
	repo := filepath.Join("..", "..")
	readme, err := os.ReadFile(filepath.Join(repo, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n## Add the receiver to your own collector\n")
	if !ok {
		t.Fatal(`README.md has no section "## Add the receiver to your own collector"`)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	cfg, err := os.ReadFile(builderConfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(cfg), "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "- gomod: ") && line != "cgo_enabled: true" {
			continue
		}
		if !strings.Contains(section, line) {
			t.Errorf("README.md's section does not quote %s's line %q", builderConfig, line)
		}
	}
	version, err := ocbVersion(repo)
	if err != nil {
		t.Fatal(err)
	}
	if run := "go run go.opentelemetry.io/collector/cmd/builder@" + version + " "; !strings.Contains(section, run) {
		t.Errorf("README.md's section does not run ocb %s, the Makefile's OCB_VERSION: want %q", version, run)
	}
}
