package vmi

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv"
)

// keys records the keys a Watcher reports.
type keys struct {
	mu   sync.Mutex
	seen map[string]int
}

func (k *keys) add(key string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.seen[key]++
}

func (k *keys) count(key string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.seen[key]
}

func TestWatcherFollowsVMIsOfItsNodeOnARealAPIServer(t *testing.T) {
	api := testenv.MustStartAPIServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	for _, name := range []string{"mine", "theirs"} {
		if err := api.CreateVMI(ctx, "default", name); err != nil {
			t.Fatal(err)
		}
	}
	runtimeUser := int64(107)
	must(t, api.SetVMIStatus(ctx, "default", "mine", testenv.VMIStatus{
		Phase: "Running", NodeName: "node-a", ActivePods: map[string]string{"pod-uid-1": "node-a"}, RuntimeUser: &runtimeUser,
	}))
	must(t, api.SetVMIStatus(ctx, "default", "theirs", testenv.VMIStatus{Phase: "Running", NodeName: "node-b"}))

	seen := &keys{seen: map[string]int{}}
	w, err := NewWatcher(api.Config, "node-a", zaptest.NewLogger(t), WatcherHandlers{Changed: seen.add})
	if err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(ctx)
	w.Start(wctx)
	t.Cleanup(func() { stop(); w.Shutdown() })

	waitFor(ctx, t, "node-a's VMI in the cache", func() bool { _, ok := w.Get("default/mine"); return ok })
	v, _ := w.Get("default/mine")
	if ok, why := v.Reportable("node-a"); !ok {
		t.Fatalf("Running VMI on node-a not reportable: %s", why)
	}
	if v.RuntimeUser != 107 || !slices.Equal(v.Pods, []string{"pod-uid-1"}) || v.UID == "" {
		t.Errorf("slim view lost fields: %+v", v)
	}
	if _, ok := w.Get("default/theirs"); ok || seen.count("default/theirs") != 0 {
		t.Error("a VMI labelled for another node reached node-a's watcher")
	}
	if seen.count("default/mine") == 0 {
		t.Error("no event for default/mine")
	}

	// Stopping is a change the watcher reports, and the cache reflects it.
	before := seen.count("default/mine")
	must(t, api.SetVMIStatus(ctx, "default", "mine", testenv.VMIStatus{Phase: "Succeeded", NodeName: "node-a"}))
	waitFor(ctx, t, "the phase change", func() bool {
		v, ok := w.Get("default/mine")
		return ok && v.Phase == "Succeeded" && seen.count("default/mine") > before
	})

	// A migration moves the node label: the VMI leaves node-a's selection.
	must(t, api.SetVMIStatus(ctx, "default", "mine", testenv.VMIStatus{Phase: "Running", NodeName: "node-b"}))
	waitFor(ctx, t, "the VMI to leave node-a", func() bool { _, ok := w.Get("default/mine"); return !ok })

	// And the other node's VMI is deleted without node-a ever hearing of it: a VMI
	// written on node-a after the delete is heard of, and one watch delivers in order.
	must(t, api.DeleteVMI(ctx, "default", "theirs"))
	must(t, api.CreateVMI(ctx, "default", "after"))
	must(t, api.SetVMIStatus(ctx, "default", "after", testenv.VMIStatus{Phase: "Running", NodeName: "node-a"}))
	waitFor(ctx, t, "the VMI written after the delete", func() bool { return seen.count("default/after") > 0 })
	if seen.count("default/theirs") != 0 {
		t.Error("node-a heard of another node's VMI")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func waitFor(ctx context.Context, t *testing.T, what string, cond func() bool) {
	t.Helper()
	if err := wait.PollUntilContextCancel(ctx, 20*time.Millisecond, true, func(context.Context) (bool, error) { return cond(), nil }); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}
