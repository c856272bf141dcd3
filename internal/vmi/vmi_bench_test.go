package vmi

import (
	"crypto/rand"
	"fmt"
	"runtime"
	"testing"
	"unsafe"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/cache"
)

// BenchmarkCacheBytesPerVMI measures what one running VMI costs in the informer's
// store without an API server: a realistic decoded VMI goes through the transform
// into a store like the informer's (no indexes), and the live heap is compared. It
// reports the packed struct's size too; the whole receiver is measured against a real
// API server in internal/bench (BenchmarkMemory).
func BenchmarkCacheBytesPerVMI(b *testing.B) {
	const n = 10000
	objs := make([]*unstructured.Unstructured, n)
	for i := range objs {
		objs[i] = runningVMI(fmt.Sprintf("bench-%d", i%10), fmt.Sprintf("vm-%05d", i), "node-a")
	}
	w := &Watcher{}
	var perVMI float64
	for range b.N {
		store := cache.NewStore(cache.DeletionHandlingMetaNamespaceKeyFunc)
		base := heapInUse()
		for _, u := range objs {
			obj, _ := w.slim(u)
			if err := store.Add(obj); err != nil {
				b.Fatal(err)
			}
		}
		perVMI = float64(heapInUse()-base) / n
		runtime.KeepAlive(store)
	}
	b.ReportMetric(perVMI, "B/vmi")
	b.ReportMetric(float64(unsafe.Sizeof(cached{})), "struct-B")
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// runningVMI is a decoded VMI as the API server sends it for a running VMI.
func runningVMI(ns, name, node string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"metadata": map[string]any{
			"namespace": ns, "name": name, "uid": uuid(), "resourceVersion": "123456",
			"labels": map[string]any{NodeLabel: node},
		},
		"status": map[string]any{
			"phase":       "Running",
			"nodeName":    node,
			"activePods":  map[string]any{uuid(): node},
			"runtimeUser": int64(107),
			"conditions":  []any{map[string]any{"type": "Ready", "status": "True"}},
		},
	}}
}

func uuid() string {
	var u [16]byte
	_, _ = rand.Read(u[:])
	return formatUUID(u)
}
