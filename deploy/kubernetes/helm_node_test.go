package manifests

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/lab"
)

// helmChart is deploy/helm's chart, installed from the checkout as the README says.
const helmChart = repoRoot + "/deploy/helm/otelcol-kubevirt"

// helmPath is the README's Helm install: the release's namespace created and
// labelled for the hostPath first, then `helm install` of the chart with the image
// set, release and namespace named otelcol-kubevirt.
func helmPath() installPath {
	return installPath{
		name: "HelmInstall",
		install: func(ctx context.Context, t *testing.T, n *realNode) *lab.Collector {
			t.Helper()
			n.kubectl(t, ctx, "create", "namespace", lab.CollectorNamespace)
			n.kubectl(t, ctx, "label", "namespace", lab.CollectorNamespace, "pod-security.kubernetes.io/enforce=privileged")
			repo, tag, _ := strings.Cut(lab.CollectorImage, ":")
			n.helm(t, ctx, "install", lab.CollectorName, helmChart, "--namespace", lab.CollectorNamespace,
				"--set", "image.repository="+repo, "--set", "image.tag="+tag)
			col, err := lab.WaitCollector(ctx, n.c)
			if err != nil {
				t.Fatal(err)
			}
			return col
		},
		uninstall: func(ctx context.Context, t *testing.T, n *realNode) {
			t.Helper()
			n.helm(t, ctx, "uninstall", lab.CollectorName, "--namespace", lab.CollectorNamespace, "--wait", "--ignore-not-found")
			n.kubectl(t, ctx, "delete", "namespace", lab.CollectorNamespace, "--ignore-not-found")
		},
	}
}

// helm runs the Helm of HELM_ASSETS against the node as cluster admin, with a
// configuration and cache of its own.
func (n *realNode) helm(t *testing.T, ctx context.Context, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(ctx, filepath.Join(os.Getenv("HELM_ASSETS"), "helm"), append(args, "--kubeconfig", n.c.Kubeconfig)...)
	home := t.TempDir()
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}
