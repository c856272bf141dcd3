package lab

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

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
	pods, err := c.Clientset.CoreV1().Pods(CollectorNamespace).List(ctx, metav1.ListOptions{
		LabelSelector: "app.kubernetes.io/name=" + CollectorName,
		FieldSelector: "spec.nodeName=" + c.NodeName(),
	})
	if err != nil {
		return nil, err
	}
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning && podReady(&p) && p.Status.PodIP != "" {
			return &Collector{Pod: p.Name, MetricsURL: "http://" + p.Status.PodIP + ":" + metricsPort + "/metrics"}, nil
		}
	}
	return nil, fmt.Errorf("no ready %s pod on node %s after its rollout", CollectorName, c.NodeName())
}

// Lines returns the endpoint's sample lines of metric name.
func (col *Collector) Lines(ctx context.Context, name string) ([]string, error) {
	return scrape.Lines(ctx, col.MetricsURL, name)
}
