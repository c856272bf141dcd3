package vmi

import (
	"crypto/rand"
	"fmt"
	"runtime"
	"testing"
	"unsafe"

	"k8s.io/client-go/tools/cache"
)

// BenchmarkCacheBytesPerVMI measures what one running VMI costs in the informer's
// store without an API server: a realistic decoded VMI goes through the transform
// into a store like the informer's (no indexes), and the live heap is compared. It
// reports the packed struct's size too; the whole receiver is measured against a real
// API server in internal/bench (BenchmarkMemory).
func BenchmarkCacheBytesPerVMI(b *testing.B) {
	const n = 10000
	objs := make([]*wire, n)
	for i := range objs {
		objs[i] = decodeWire(b, runningVMI(fmt.Sprintf("bench-%d", i%10), fmt.Sprintf("vm-%05d", i), "node-a"))
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

// runningVMI is a VMI as the API server sends it for a running VMI.
func runningVMI(ns, name, node string) string {
	return fmt.Sprintf(`{"apiVersion":"kubevirt.io/v1","kind":"VirtualMachineInstance",
		"metadata":{"namespace":%q,"name":%q,"uid":%q,"resourceVersion":"123456","labels":{%q:%q}},
		"status":{"phase":"Running","nodeName":%q,"activePods":{%q:%q},"runtimeUser":107,
			"conditions":[{"type":"Ready","status":"True"}]}}`,
		ns, name, uuid(), NodeLabel, node, node, uuid(), node)
}

func uuid() string {
	var u [16]byte
	_, _ = rand.Read(u[:])
	return formatUUID(u)
}
