package lab

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/cluster"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv/scrape"
)

// CollectorImage is the image `make image` builds from the repository's Dockerfile.
const CollectorImage = "localhost/otelcol-kubevirt:latest"

// The DaemonSet's identity, as deploy/kubernetes names it.
const (
	CollectorNamespace = "otelcol-kubevirt"
	CollectorName      = "otelcol-kubevirt"
	metricsPort        = "9464"
)

// Collector is the DaemonSet's pod on the node.
type Collector struct {
	// Pod is the pod's name, in CollectorNamespace.
	Pod string
	// MetricsURL is its Prometheus endpoint, reached at the pod's IP from the
	// host, as a Prometheus in the cluster would.
	MetricsURL string
}

// DeployCollector deploys the collector as a user does: `kubectl apply -k` of
// deploy/kubernetes with only the image set, through an overlay holding what
// `kustomize edit set image otelcol-kubevirt=<image>` would write. It returns once the
// DaemonSet has rolled out and its pod on the node is Ready.
func DeployCollector(ctx context.Context, c *cluster.Cluster, repoRoot, image string) (*Collector, error) {
	if err := ApplyCollector(ctx, c, repoRoot, image); err != nil {
		return nil, err
	}
	return WaitCollector(ctx, c)
}

// ApplyCollector is DeployCollector's `kubectl apply -k`, without the wait.
func ApplyCollector(ctx context.Context, c *cluster.Cluster, repoRoot, image string) error {
	name, tag, ok := strings.Cut(image, ":")
	if !ok || strings.Contains(tag, "/") {
		return fmt.Errorf("lab: image %q has no tag", image)
	}
	overlay, err := os.MkdirTemp("", "otelcol-kubevirt-overlay-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(overlay)
	manifests, err := filepath.Abs(filepath.Join(repoRoot, "deploy", "kubernetes"))
	if err != nil {
		return err
	}
	base, err := filepath.Rel(overlay, manifests)
	if err != nil {
		return err
	}
	kustomization := fmt.Sprintf(`apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - %s
images:
  - name: otelcol-kubevirt
    newName: %s
    newTag: %s
`, base, name, tag)
	if err := os.WriteFile(filepath.Join(overlay, "kustomization.yaml"), []byte(kustomization), 0o644); err != nil {
		return err
	}
	_, err = c.Kubectl(ctx, nil, "apply", "-k", overlay)
	return err
}

// WaitCollector waits for the DaemonSet's rollout and returns its pod on the node.
func WaitCollector(ctx context.Context, c *cluster.Cluster) (*Collector, error) {
	if _, err := c.Kubectl(ctx, nil, "--namespace", CollectorNamespace, "rollout", "status",
		"daemonset/"+CollectorName, "--timeout=3m"); err != nil {
		return nil, err
	}
	// rollout status reads the DaemonSet's status, which may be behind its pod: it
	// returned while the only pod was Running but not Ready (twice in a row in the
	// lab's tests, with the DaemonSet controller's cache behind). The pod must be.
	var col *Collector
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		pods, err := c.Clientset.CoreV1().Pods(CollectorNamespace).List(ctx, metav1.ListOptions{
			LabelSelector: "app.kubernetes.io/name=" + CollectorName,
			FieldSelector: "spec.nodeName=" + c.NodeName(),
		})
		if err != nil {
			return false, err
		}
		for _, p := range pods.Items {
			if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning && podReady(&p) && p.Status.PodIP != "" {
				col = &Collector{Pod: p.Name, MetricsURL: "http://" + p.Status.PodIP + ":" + metricsPort + "/metrics"}
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return nil, fmt.Errorf("no ready %s pod on node %s after its rollout: %w", CollectorName, c.NodeName(), err)
	}
	return col, nil
}

// Lines returns the endpoint's sample lines of metric name.
func (col *Collector) Lines(ctx context.Context, name string) ([]string, error) {
	return scrape.Lines(ctx, col.MetricsURL, name)
}
