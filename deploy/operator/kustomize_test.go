package operator

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv"
)

// TestKustomizeSetsImage: `kustomize edit set image otelcol-kubevirt=...`, as the
// README says, must reach the OpenTelemetryCollector's spec.image, which kustomize
// does not know as an image field without kustomizeconfig.yaml. Without that file
// the image stays as it is, which the second half checks, so the first half proves
// the file works rather than something else.
func TestKustomizeSetsImage(t *testing.T) {
	testenv.RequireDaemons(t, "kubectl kustomize")
	const images = "images:\n  - name: otelcol-kubevirt\n    newName: registry.example/otelcol-kubevirt\n    newTag: v1\n"
	const want = "registry.example/otelcol-kubevirt:v1"

	for _, c := range []struct {
		name      string
		edit      func(kustomization string) string
		wantImage string
	}{
		{"as shipped", func(k string) string { return k }, want},
		{"without kustomizeconfig.yaml", func(k string) string {
			return strings.Replace(k, "configurations:\n  - kustomizeconfig.yaml\n", "", 1)
		}, "otelcol-kubevirt:latest"},
	} {
		dir := t.TempDir()
		files, err := filepath.Glob("*.yaml")
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if f == "kustomization.yaml" {
				edited := c.edit(string(data))
				if c.name != "as shipped" && edited == string(data) {
					t.Fatalf("%s: the edit changed nothing in kustomization.yaml", c.name)
				}
				data = []byte(edited + images)
			}
			if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		collector := findKind(t, render(t, dir), "OpenTelemetryCollector")
		if got, _ := spec(collector.Object)["image"].(string); got != c.wantImage {
			t.Errorf("%s: spec.image = %q, want %q", c.name, got, c.wantImage)
		}
	}
}
