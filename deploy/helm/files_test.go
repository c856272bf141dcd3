package helmchart

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the chart's files/ from the files they copy")

// shippedFiles maps each file of the chart's files/ to the one it copies. Helm reads
// only files inside the chart, so the chart carries copies; this keeps each the
// same as its source, the one place it is edited.
var shippedFiles = map[string]string{
	"files/config.yaml":                    "cmd/otelcol-kubevirt/config.yaml",
	"files/kubevirt-hypervisor-rules.yaml": "deploy/prometheus/kubevirt-hypervisor-rules.yaml",
}

// TestChartFilesAreShipped fails when a copy in the chart differs from its source;
// `go test ./deploy/helm -run TestChartFilesAreShipped -update` rewrites the copies.
func TestChartFilesAreShipped(t *testing.T) {
	for copied, source := range shippedFiles {
		want, err := os.ReadFile(filepath.Join(repoRoot, source))
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(chartDir, copied)
		if *update {
			if err := os.WriteFile(path, want, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("deploy/helm/%s differs from %s; run: go test ./deploy/helm -run TestChartFilesAreShipped -update",
				path, source)
		}
	}
}
