package lab

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/cluster"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv"
)

const (
	repoRoot         = "../.."
	hypervisorMetric = "kubevirt_vmi_hypervisor_info"
)

// labNode is a real node with the lab on it and the collector deployed as users do.
type labNode struct {
	c   *cluster.Cluster
	lab *Lab
	col *Collector
}

// startLabNode starts the node, the lab and the collector's DaemonSet, and stops them
// when the test ends, leaving nothing on the host.
func startLabNode(t *testing.T, ctx context.Context) *labNode {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Unavailable(t, "the real node needs root")
	}
	if _, err := ImagesFromEnv(); err != nil || os.Getenv("KUBEBUILDER_ASSETS") == "" || os.Getenv("CONTAINERD_ASSETS") == "" {
		testenv.Unavailable(t, "the real node needs the binaries and images `make test` builds and names (%v)", err)
	}
	c, l := StartTestNode(ctx, t, repoRoot)
	col, err := DeployCollector(ctx, c, repoRoot, CollectorImage)
	if err != nil {
		t.Fatal(err)
	}
	return &labNode{c: c, lab: l, col: col}
}

// line is the exact exposition line of a running VMI on the node.
func (n *labNode) line(hypervisorType, ns, name string) string {
	return fmt.Sprintf(`%s{hypervisor_type=%q,name=%q,namespace=%q,node=%q} 1`, hypervisorMetric, hypervisorType, name, ns, n.c.NodeName())
}

// accelerated is the type a VMI not asking for emulation gets here.
func (n *labNode) accelerated() string {
	if n.lab.KVM {
		return "kvm"
	}
	return "qemu-tcg" // no usable /dev/kvm on this machine
}

func (n *labNode) kubectl(t *testing.T, ctx context.Context, stdin string, args ...string) string {
	t.Helper()
	var in []byte
	if stdin != "" {
		in = []byte(stdin)
	}
	out, err := n.c.Kubectl(ctx, in, args...)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// waitLines polls the collector until its hypervisor lines are exactly want.
func (n *labNode) waitLines(t *testing.T, ctx context.Context, want ...string) {
	t.Helper()
	slices.Sort(want)
	var got []string
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 2*time.Minute, true, func(context.Context) (bool, error) {
		var err error
		got, err = n.col.Lines(ctx, hypervisorMetric)
		slices.Sort(got)
		return err == nil && slices.Equal(got, want), nil
	})
	if err != nil {
		t.Fatalf("the collector shows\n  %s\nwant\n  %s\n(%v)", strings.Join(got, "\n  "), strings.Join(want, "\n  "), err)
	}
}

// counter sums the collector's samples of a counter, over all its series.
func (n *labNode) counter(t *testing.T, ctx context.Context, name string) float64 {
	t.Helper()
	lines, err := n.col.Lines(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, l := range lines {
		var v float64
		if _, err := fmt.Sscan(l[strings.LastIndexByte(l, ' ')+1:], &v); err != nil {
			t.Fatalf("%s: %v", l, err)
		}
		sum += v
	}
	return sum
}

// vmiYAML is a VMI default/name as a user writes one, with each annotation set to
// "true"; no grace period, so that deleting it does not wait 45 s for a guest that
// cannot shut down by itself.
func vmiYAML(name string, annotations ...string) string {
	a := ""
	if len(annotations) > 0 {
		a = "\n  annotations:"
	}
	for _, k := range annotations {
		a += fmt.Sprintf("\n    %s: \"true\"", k)
	}
	return fmt.Sprintf(`apiVersion: kubevirt.io/v1
kind: VirtualMachineInstance
metadata:
  name: %s
  namespace: default%s
spec:
  terminationGracePeriodSeconds: 0
  domain:
    devices: {}
    resources:
      requests:
        memory: 64Mi
`, name, a)
}
