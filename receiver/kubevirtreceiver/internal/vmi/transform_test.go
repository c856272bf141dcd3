package vmi

import (
	"reflect"
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/tools/cache"
)

const sampleDoc = `{"metadata":{"namespace":"default","name":"vm","uid":"6a4d1a7c-3b57-4ad5-8c3c-3cbd2d9f8f1e","resourceVersion":"4711"},
	"status":{"phase":"Running","nodeName":"node-a","runtimeUser":107,"conditions":[{"type":"Paused","status":"True"}],
		"activePods":{"pod-2":"node-a","pod-3":"node-b","pod-1":"node-a"}}}`

// TestTransformKeepsTheLauncherPodsOfItsNode: the cache holds, of status.activePods,
// the pods on the watcher's node, sorted, and a VMI passed through again (as the
// informer may) keeps them.
func TestTransformKeepsTheLauncherPodsOfItsNode(t *testing.T) {
	w := &Watcher{node: "node-a"}
	v := decode(t, sampleDoc)
	got, err := w.transform(v)
	if err != nil || got != v {
		t.Fatalf("transform = %v, %v", got, err)
	}
	if !slices.Equal(v.Pods, []string{"pod-1", "pod-2"}) || v.activePods != nil {
		t.Fatalf("Pods = %v (activePods %v), want node-a's pods sorted", v.Pods, v.activePods)
	}
	if _, err := w.transform(v); err != nil || !slices.Equal(v.Pods, []string{"pod-1", "pod-2"}) {
		t.Errorf("a second pass changed Pods to %v (%v)", v.Pods, err)
	}
	other := decode(t, sampleDoc)
	if _, err := (&Watcher{node: "node-c"}).transform(other); err != nil || other.Pods != nil {
		t.Errorf("node-c's view has pods %v (%v)", other.Pods, err)
	}

	tomb := decode(t, sampleDoc)
	if _, err := w.transform(cache.DeletedFinalStateUnknown{Key: "default/vm", Obj: tomb}); err != nil || len(tomb.Pods) != 2 {
		t.Errorf("tombstoned VMI: Pods %v, %v", tomb.Pods, err)
	}
}

func TestVMIIsKeyedAndVersionedLikeTheObject(t *testing.T) {
	v := decode(t, sampleDoc)
	v.forNode("node-a")
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(v)
	if err != nil || key != "default/vm" || v.Key() != key {
		t.Fatalf("key = %q, %v; VMI key %q", key, err, v.Key())
	}
	m, err := meta.Accessor(v)
	if err != nil {
		t.Fatal(err)
	}
	if m.GetResourceVersion() != "4711" || m.GetUID() != "6a4d1a7c-3b57-4ad5-8c3c-3cbd2d9f8f1e" {
		t.Errorf("accessor: rv %q uid %q", m.GetResourceVersion(), m.GetUID())
	}
	d := v.DeepCopyObject().(*VMI)
	if !reflect.DeepEqual(d, v) {
		t.Errorf("DeepCopyObject = %+v, want %+v", d, v)
	}
	d.Pods[0] = "changed"
	if v.Pods[0] != "pod-1" {
		t.Error("DeepCopyObject shares Pods")
	}
}

// TestSameStateSeesEveryFieldDetectionReads: an update is worth a detection exactly
// when it changes what detection reads (UID, phase, node, runtime user, pause,
// launcher pods on this node, an ended migration).
func TestSameStateSeesEveryFieldDetectionReads(t *testing.T) {
	changes := map[string]struct {
		change func(*VMI)
		same   bool
	}{
		"nothing":            {func(*VMI) {}, true},
		"resourceVersion":    {func(v *VMI) { v.ResourceVersion = "4712" }, true},
		"another node's pod": {func(v *VMI) { v.activePods["pod-4"] = "node-b" }, true},
		"uid":                {func(v *VMI) { v.UID = "7a4d1a7c-3b57-4ad5-8c3c-3cbd2d9f8f1e" }, false},
		"phase":              {func(v *VMI) { v.Phase = "Succeeded" }, false},
		"node":               {func(v *VMI) { v.NodeName = "node-b" }, false},
		"runtime user":       {func(v *VMI) { v.RuntimeUser = 0 }, false},
		"paused":             {func(v *VMI) { v.Paused = false }, false},
		"pod added":          {func(v *VMI) { v.activePods["pod-0"] = "node-a" }, false},
		"pod moved":          {func(v *VMI) { v.activePods["pod-3"] = "node-a" }, false},
		"pods gone":          {func(v *VMI) { v.activePods = nil }, false},
		"migration ended":    {func(v *VMI) { v.MigrationEnded = "9b1e0c3a-0000-4000-8000-000000000000" }, false},
	}
	for name, c := range changes {
		a, b := decode(t, sampleDoc), decode(t, sampleDoc)
		c.change(b)
		a.forNode("node-a")
		b.forNode("node-a")
		if got := a.sameState(b); got != c.same {
			t.Errorf("%s: sameState = %v, want %v", name, got, c.same)
		}
	}
}
