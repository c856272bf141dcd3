package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv"
)

// giveUp bounds the waits for a removal to show.
const giveUp = 15 * time.Second

// lab is one test's KubeVirt-like node: a kube-apiserver and a launcher-like libvirtd.
type lab struct {
	api *testenv.APIServer
	lv  *testenv.Libvirtd
}

func newLab(t *testing.T) *lab {
	t.Helper()
	return &lab{api: testenv.MustStartAPIServer(t), lv: testenv.MustStartLibvirtd(t, testenv.LibvirtdOptions{})}
}

// runTCG starts a TCG guest for ns/name, marks the VMI Running on node and returns
// the line the collector is expected to serve for it. TCG works on every machine, so
// the tests that do not care about the hypervisor use it throughout.
func (l *lab) runTCG(ctx context.Context, t *testing.T, ns, name string) string {
	t.Helper()
	if err := l.lv.StartGuest(ctx, ns+"_"+name, "qemu"); err != nil {
		t.Fatal(err)
	}
	runVMI(ctx, t, l.api, ns, name)
	return line("qemu-tcg", ns, name)
}

// line is the exact exposition line of a running VMI on node.
func line(hypervisorType, ns, name string) string {
	return fmt.Sprintf(`%s{hypervisor_type=%q,name=%q,namespace=%q,node=%q} 1`, metric, hypervisorType, name, ns, node)
}

// collectorEnv is the environment the shipped config needs to watch the lab.
func (l *lab) collectorEnv() []string {
	return []string{
		"K8S_NODE_NAME=" + node,
		"KUBEVIRT_AUTH_TYPE=kubeConfig",
		"KUBECONFIG=" + l.api.KubeconfigPath,
		// One libvirtd for every VMI; the launcher layout has its own test.
		"LIBVIRT_SOURCE=uri",
		"LIBVIRT_URI=" + l.lv.URI(),
	}
}

// startCollectorWith starts a collector and stops it when the test ends, showing its
// log if the test failed.
func startCollectorWith(ctx context.Context, t *testing.T, opts testenv.CollectorOptions) *testenv.Collector {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	col, err := testenv.StartCollector(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := col.Stop(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			b, _ := os.ReadFile(col.LogPath)
			t.Logf("collector log (%s):\n%s", opts.Config, b)
		}
	})
	return col
}

// repoFile is the absolute path of a file given relative to the repository root.
func repoFile(t *testing.T, rel string) string {
	t.Helper()
	abs, err := filepath.Abs(filepath.Join("..", "..", rel))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(abs); err != nil {
		t.Fatal(err)
	}
	return abs
}

// waitUntilGone polls the endpoint until none of gone is served, and returns how long
// that took from start. It gives up after giveUp: a series the exporter failed to drop
// would linger for its metric_expiration (minutes), so waiting longer shows nothing.
func waitUntilGone(ctx context.Context, t *testing.T, col *testenv.Collector, start time.Time, gone ...string) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, giveUp)
	defer cancel()
	var got []string
	err := wait.PollUntilContextCancel(ctx, 5*time.Millisecond, true, func(context.Context) (bool, error) {
		var err error
		got, err = col.Lines(ctx, metric)
		return err == nil && !slices.ContainsFunc(got, func(l string) bool { return slices.Contains(gone, l) }), nil
	})
	if err != nil {
		t.Fatalf("still served after %v: %q\nall lines: %q", time.Since(start), gone, got)
	}
	return time.Since(start)
}
