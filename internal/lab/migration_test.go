package lab

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv"
)

const (
	detectionsMetric = "kubevirt_vmi_hypervisor_detection_duration_seconds_count"
	failuresMetric   = "kubevirt_vmi_hypervisor_detection_failures_total"
)

// TestMigrationsOnRealNode migrates one VMI within the real node as KubeVirt does
// (internal/lab/migration.go): A -> B -> A, from an accelerated launcher to an
// emulated one and back, then from a non-root launcher to a root one and back
// (status.runtimeUser changing before the target pod exists), each migration a new launcher pod beside the running one,
// the source's guest stopped once the target's runs, its pod left Succeeded and still
// listed in status.activePods. The collector is scraped every 50 ms throughout: at
// every scrape the VMI has exactly one series, of the source's or the target's type,
// and once the target's type shows the source's never comes back; after each
// migration the line is exactly the target's. Then the leftover entries cost
// nothing: more changes of the VMI are each detected again, and not one detection
// fails.
func TestMigrationsOnRealNode(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	n := startLabNode(t, ctx)
	const ns, name = "default", "mover"
	n.kubectl(t, ctx, vmiYAML(name), "create", "-f", "-")
	accelerated := n.accelerated()
	n.waitLines(t, ctx, n.line(accelerated, ns, name))

	// A -> B -> A twice: the domain type, then the launcher's user (non-root ->
	// root -> non-root), whose status.runtimeUser changes before the target pod
	// exists, while the source still runs as the old user.
	steps := []struct {
		emulated, root bool
		want           string
		user           int64
	}{
		{emulated: true, want: "qemu-tcg", user: 107},
		{emulated: false, want: accelerated, user: 107},
		{root: true, want: accelerated, user: 0},
		{root: false, want: accelerated, user: 107},
	}
	from := accelerated
	for i, step := range steps {
		migration := fmt.Sprintf("%s-migration-%d", name, i+1)
		t.Logf("%s: %s -> %s, runtimeUser %d", migration, from, step.want, step.user)
		n.kubectl(t, ctx, "", "annotate", "--overwrite", "vmi", "-n", ns, name,
			fmt.Sprintf("%s=%t", EmulationAnnotation, step.emulated), fmt.Sprintf("%s=%t", RootLauncherAnnotation, step.root))
		seen := n.observe(ctx, ns, name)
		n.kubectl(t, ctx, fmt.Sprintf(`apiVersion: kubevirt.io/v1
kind: VirtualMachineInstanceMigration
metadata:
  name: %s
  namespace: %s
spec:
  vmiName: %s
`, migration, ns, name), "create", "-f", "-")
		n.waitMigration(t, ctx, ns, migration)
		n.waitLines(t, ctx, n.line(step.want, ns, name))
		checkSeries(t, seen(), n.line(from, ns, name), n.line(step.want, ns, name))
		v, err := n.c.Dynamic.Resource(testenv.VMIResource).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if user, _, _ := unstructured.NestedInt64(v.Object, "status", "runtimeUser"); user != step.user {
			t.Fatalf("after %s status.runtimeUser is %d, want %d", migration, user, step.user)
		}
		from = step.want
	}

	// Every launcher pod the VMI had stays listed, the sources Succeeded.
	v, err := n.c.Dynamic.Resource(testenv.VMIResource).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	active, _, _ := unstructured.NestedStringMap(v.Object, "status", "activePods")
	if len(active) != len(steps)+1 {
		t.Fatalf("status.activePods = %v, want %d pods", active, len(steps)+1)
	}
	if _, labelled := v.GetLabels()[MigrationTargetLabel]; labelled {
		t.Errorf("the VMI still has %s after its migrations: %v", MigrationTargetLabel, v.GetLabels())
	}
	var succeeded []string
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		succeeded = nil
		pods, err := n.c.Clientset.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: vmNameLabel + "=" + name})
		if err != nil {
			return false, err
		}
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodSucceeded {
				succeeded = append(succeeded, p.Name)
			}
		}
		return len(succeeded) == len(steps), nil
	})
	if err != nil {
		t.Fatalf("source pods Succeeded: %v, want %d (%v)", succeeded, len(steps), err)
	}

	// The leftovers cost no failed reads: each further change of the VMI that
	// matters to detection (its Paused condition, set and cleared as virt-handler
	// would; the lab does not pause guests) is read again, from the running
	// launcher, and no detection fails.
	failures := n.counter(t, ctx, failuresMetric)
	for i := range 4 {
		detections := n.counter(t, ctx, detectionsMetric)
		conditions := `[]`
		if i%2 == 0 {
			conditions = `[{"type":"Paused","status":"True","reason":"PausedByUser"}]`
		}
		n.kubectl(t, ctx, "", "patch", "vmi", "-n", ns, name, "--type=merge", "-p", `{"status":{"conditions":`+conditions+`}}`)
		var now float64
		err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
			now = n.counter(t, ctx, detectionsMetric)
			return now > detections, nil
		})
		if err != nil {
			t.Fatalf("change %d of the VMI was not detected again: %v detections before, %v after (%v)", i, detections, now, err)
		}
	}
	if got := n.counter(t, ctx, failuresMetric); got != failures {
		t.Errorf("detection failures went from %v to %v over 4 changes of a VMI whose activePods lists %d ended pods", failures, got, len(steps))
	}
	n.waitLines(t, ctx, n.line(from, ns, name))
}

// waitMigration waits for migration ns/name to succeed.
func (n *labNode) waitMigration(t *testing.T, ctx context.Context, ns, name string) {
	t.Helper()
	var phase string
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		m, err := n.c.Dynamic.Resource(MigrationResource).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		phase = phaseOf(m)
		return phase == "Succeeded" || phase == "Failed", nil
	})
	if err != nil || phase != "Succeeded" {
		t.Fatalf("migration %s/%s: phase %q (%v), want Succeeded", ns, name, phase, err)
	}
}

// observe scrapes the collector every 50 ms for VMI ns/name's series until the
// returned function is called, which returns each scrape's lines of that VMI.
func (n *labNode) observe(ctx context.Context, ns, name string) func() [][]string {
	ctx, cancel := context.WithCancel(ctx)
	var (
		wg      sync.WaitGroup
		scrapes [][]string
	)
	match := fmt.Sprintf(`name=%q,namespace=%q`, name, ns)
	wg.Go(func() {
		for ctx.Err() == nil {
			if lines, err := n.col.Lines(ctx, hypervisorMetric); err == nil {
				mine := []string{}
				for _, l := range lines {
					if strings.Contains(l, match) {
						mine = append(mine, l)
					}
				}
				scrapes = append(scrapes, mine)
			}
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	})
	return func() [][]string {
		cancel()
		wg.Wait()
		return scrapes
	}
}

// checkSeries holds the scrapes taken during a migration to exactly one series each,
// the source's line until the target's shows, the target's from then on.
func checkSeries(t *testing.T, scrapes [][]string, source, target string) {
	t.Helper()
	if len(scrapes) == 0 {
		t.Fatal("no scrape succeeded during the migration")
	}
	targetSeen := false
	for i, s := range scrapes {
		switch {
		case len(s) != 1:
			t.Errorf("scrape %d of %d during the migration: %d series %q, want exactly one", i+1, len(scrapes), len(s), s)
		case s[0] == target:
			targetSeen = true
		case s[0] == source && !targetSeen:
		default:
			t.Errorf("scrape %d of %d during the migration: %s, want %s or, until then, %s", i+1, len(scrapes), s[0], target, source)
		}
	}
	t.Logf("%d scrapes during the migration: %s then %s", len(scrapes), source, target)
}
