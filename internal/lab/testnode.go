package lab

import (
	"context"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/cluster"
)

// StartTestNode starts, for test t, the real node with the lab on it, from the images
// `make test` names (ImagesFromEnv), and stops both when t ends, failing t if the node
// left anything on the host; a failed t gets the pods, VMIs and migrations, the
// launchers' warnings and the node's logs. It does not deploy the collector.
func StartTestNode(ctx context.Context, t testing.TB, repoRoot string) (*cluster.Cluster, *Lab) {
	t.Helper()
	images, err := ImagesFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	before, release, err := cluster.HoldHost(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(release)
	c, err := cluster.Start(ctx, cluster.Options{Images: images, Progress: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Registered before Stop's, so it runs after it: nothing of the node is left.
		if left, err := before.Leftovers(); err != nil || len(left) > 0 {
			t.Errorf("the stopped node left on the host (%v):\n  %s", err, strings.Join(left, "\n  "))
		}
	})
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := c.Kubectl(context.Background(), nil, "get", "pods,vmi,vmim", "-A", "-o", "wide")
			t.Logf("at failure:\n%s\nlaunchers' logs:\n%s\nnode logs:%s", out, launcherWarnings(c), c.Logs())
		}
		if err := c.Stop(); err != nil {
			t.Errorf("stopping the node: %v", err)
		}
	})
	l, err := Start(ctx, c, Options{RepoRoot: repoRoot, Progress: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Stop)
	return c, l
}

// launcherWarnings returns what virt-launcher logged in the lab's launcher pods beyond
// its info lines, which are many.
func launcherWarnings(c *cluster.Cluster) string {
	ctx := context.Background()
	var logs []string
	pods, _ := c.Clientset.CoreV1().Pods("").List(ctx, metav1.ListOptions{LabelSelector: launcherLabel + "=virt-launcher"})
	for _, p := range pods.Items {
		out, _ := c.Kubectl(ctx, nil, "logs", "-n", p.Namespace, p.Name)
		for l := range strings.Lines(string(out)) {
			if !strings.Contains(l, `"level":"info"`) {
				logs = append(logs, p.Name+": "+strings.TrimSpace(l))
			}
		}
	}
	return strings.Join(logs, "\n")
}
