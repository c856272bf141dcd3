package vmi

import (
	"fmt"
	"reflect"
	"testing"
	"unsafe"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
)

func sampleVMI() *VMI {
	return &VMI{
		Namespace: "default", Name: "vm", UID: "6a4d1a7c-3b57-4ad5-8c3c-3cbd2d9f8f1e", ResourceVersion: "4711",
		Phase: "Running", NodeName: "node-a", RuntimeUser: 107, Paused: true,
		ActivePods: map[string]string{"pod-2": "node-b", "pod-1": "node-a"},
	}
}

func TestCachedUnpacksToTheSameVMI(t *testing.T) {
	var in interner
	for _, uid := range []types.UID{
		"6a4d1a7c-3b57-4ad5-8c3c-3cbd2d9f8f1e", // canonical: packed into 16 bytes
		"u1",                                   // anything else is kept as text
		"6A4D1A7C-3B57-4AD5-8C3C-3CBD2D9F8F1E",
		"00000000-0000-0000-0000-000000000000",
		"",
	} {
		v := sampleVMI()
		v.UID = uid
		if got := compact(v, &in).vmi(); !reflect.DeepEqual(got, v) {
			t.Errorf("UID %q: compact(v).vmi() = %+v, want %+v", uid, got, v)
		}
	}
	bare := &VMI{Namespace: "ns", Name: "n"}
	if got := compact(bare, &in).vmi(); !reflect.DeepEqual(got, bare) {
		t.Errorf("compact(%+v).vmi() = %+v", bare, got)
	}
}

func TestCachedIsKeyedAndVersionedLikeTheObject(t *testing.T) {
	c := compact(sampleVMI(), &interner{})
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(c)
	if err != nil || key != "default/vm" || c.key != key {
		t.Fatalf("key = %q, %v; cached key %q", key, err, c.key)
	}
	if !sameBacking(key, c.key) {
		t.Error("client-go's key for a cached VMI is a copy of its key, not the key itself")
	}
	m, err := meta.Accessor(c)
	if err != nil {
		t.Fatal(err)
	}
	if m.GetResourceVersion() != "4711" || m.GetUID() != "6a4d1a7c-3b57-4ad5-8c3c-3cbd2d9f8f1e" {
		t.Errorf("accessor: rv %q uid %q", m.GetResourceVersion(), m.GetUID())
	}
	if d := c.DeepCopyObject().(*cached); !reflect.DeepEqual(d, c) {
		t.Errorf("DeepCopyObject = %+v, want %+v", d, c)
	}
}

// TestCachedSameStateSeesEveryFieldDetectionReads: an update is worth a detection
// exactly when it changes what detection reads (UID, phase, node, runtime user,
// pause, launcher pods), whatever form the UID takes.
func TestCachedSameStateSeesEveryFieldDetectionReads(t *testing.T) {
	changes := map[string]struct {
		change func(*VMI)
		same   bool
	}{
		"nothing":         {func(*VMI) {}, true},
		"resourceVersion": {func(v *VMI) { v.ResourceVersion = "4712" }, true},
		"uid":             {func(v *VMI) { v.UID = "7a4d1a7c-3b57-4ad5-8c3c-3cbd2d9f8f1e" }, false},
		"uid as text":     {func(v *VMI) { v.UID = "u2" }, false},
		"phase":           {func(v *VMI) { v.Phase = "Succeeded" }, false},
		"node":            {func(v *VMI) { v.NodeName = "node-b" }, false},
		"runtime user":    {func(v *VMI) { v.RuntimeUser = 0 }, false},
		"paused":          {func(v *VMI) { v.Paused = false }, false},
		"pod added":       {func(v *VMI) { v.ActivePods["pod-3"] = "node-a" }, false},
		"pod moved":       {func(v *VMI) { v.ActivePods["pod-2"] = "node-a" }, false},
		"pods gone":       {func(v *VMI) { v.ActivePods = nil }, false},
	}
	var in interner
	for name, c := range changes {
		for _, baseUID := range []types.UID{"6a4d1a7c-3b57-4ad5-8c3c-3cbd2d9f8f1e", "u1"} {
			a, b := sampleVMI(), sampleVMI()
			a.UID, b.UID = baseUID, baseUID
			c.change(b)
			if got := compact(a, &in).sameState(compact(b, &in)); got != c.same {
				t.Errorf("%s (uid %s): sameState = %v, want %v", name, baseUID, got, c.same)
			}
		}
	}
}

func TestInternerSharesRepeatedStringsAndIsBounded(t *testing.T) {
	var in interner
	a := in.get(string([]byte("node-a")))
	b := in.get(string([]byte("node-a")))
	if a != b || !sameBacking(a, b) {
		t.Error("the same node name was not interned")
	}
	for i := range 2 * maxInterned {
		in.get(fmt.Sprint("node-", i))
	}
	if len(in.m) != maxInterned {
		t.Errorf("interner holds %d strings, want at most %d", len(in.m), maxInterned)
	}
	if got := in.get("past-the-bound"); got != "past-the-bound" {
		t.Errorf("get past the bound = %q", got)
	}
}

// sameBacking says whether two strings share their bytes.
func sameBacking(a, b string) bool {
	return unsafe.StringData(a) == unsafe.StringData(b)
}

func TestSlimPacksDecodedAndTombstonedVMIs(t *testing.T) {
	w := &Watcher{}
	u := decodeWire(t, `{"metadata":{"namespace":"default","name":"vm","uid":"u1","resourceVersion":"7"},"status":{"phase":"Running","nodeName":"node-a"}}`)
	got, err := w.slim(u)
	if c, ok := got.(*cached); err != nil || !ok || c.key != "default/vm" || c.phase != "Running" {
		t.Fatalf("slim(decoded VMI) = %#v, %v", got, err)
	}
	if again, _ := w.slim(got); again != got {
		t.Error("slim did not pass an already packed VMI through")
	}
	tomb, _ := w.slim(cache.DeletedFinalStateUnknown{Key: "default/vm", Obj: u})
	if d, ok := tomb.(cache.DeletedFinalStateUnknown); !ok || d.Key != "default/vm" {
		t.Fatalf("slim(tombstone) = %#v", tomb)
	} else if _, ok := d.Obj.(*cached); !ok {
		t.Errorf("tombstone still holds %T", d.Obj)
	}
}

// TestCachedFitsItsSizeClasses guards the memory figures in docs/benchmarks.md: the
// cached VMI fits the 128-byte allocation size class, and a one-pod activePods slice
// the 48-byte one, UIDs included.
func TestCachedFitsItsSizeClasses(t *testing.T) {
	if size := unsafe.Sizeof(cached{}); size > 128 {
		t.Errorf("cached is %d bytes, want at most 128", size)
	}
	if size := unsafe.Sizeof(pod{}); size > 48 {
		t.Errorf("pod is %d bytes, want at most 48", size)
	}
	if p := compact(sampleVMI(), &interner{}).pods[0]; p.uid.text == nil || p.uid.String() != "pod-1" {
		t.Errorf("a pod UID that is no UUID is kept as %+v (%s), want the text pod-1", p.uid, p.uid)
	}
	uuid := "6a4d1a7c-3b57-4ad5-8c3c-3cbd2d9f8f1e"
	v := sampleVMI()
	v.ActivePods = map[string]string{uuid: "node-a"}
	if p := compact(v, &interner{}).pods[0]; p.uid.text != nil || p.uid.String() != uuid {
		t.Errorf("a canonical pod UID is kept as %+v (%s), want packed", p.uid, p.uid)
	}
}
