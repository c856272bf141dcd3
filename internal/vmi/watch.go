package vmi

import (
	"context"
	"fmt"
	"sync"

	"go.uber.org/zap"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/cache"
)

// Watcher keeps a cache of the VMIs labelled for one node and reports the key of every
// VMI that is added, changed or deleted. A VMI whose node label moves to another node
// (a completed migration) leaves the selection and is reported as deleted.
type Watcher struct {
	informer cache.SharedIndexInformer
	names    interner
	wg       sync.WaitGroup
}

// NewWatcher prepares a watch of node's VMIs through client. onChange receives VMI keys
// (namespace/name) and must not block.
func NewWatcher(client dynamic.Interface, node string, logger *zap.Logger, onChange func(key string)) (*Watcher, error) {
	selector := labels.Set{NodeLabel: node}.AsSelector().String()
	vmis := client.Resource(Resource)
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.LabelSelector = selector
			return vmis.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.LabelSelector = selector
			return vmis.Watch(ctx, o)
		},
	}
	// Built by hand rather than by dynamicinformer, which adds a namespace index the
	// receiver never uses (one more map entry per VMI).
	w := &Watcher{informer: cache.NewSharedIndexInformerWithOptions(
		cache.ToListWatcherWithWatchListSemantics(lw, client),
		&unstructured.Unstructured{},
		cache.SharedIndexInformerOptions{ObjectDescription: Resource.String()},
	)}
	if err := w.informer.SetTransform(w.slim); err != nil {
		return nil, fmt.Errorf("vmi informer: %w", err)
	}
	// The reflector retries on its own; this routes its complaints (API server down,
	// CRD missing, RBAC) to the collector's log instead of klog.
	if err := w.informer.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
		logger.Warn("Watching VirtualMachineInstances failed; retrying", zap.String("label_selector", selector), zap.Error(err))
	}); err != nil {
		return nil, fmt.Errorf("vmi informer: %w", err)
	}
	notify := func(obj any) {
		switch o := obj.(type) {
		case *cached:
			onChange(o.key) // shared with the cache rather than built again
		case cache.DeletedFinalStateUnknown:
			onChange(o.Key)
		}
	}
	if _, err := w.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: notify,
		UpdateFunc: func(old, obj any) {
			o, ok1 := old.(*cached)
			n, ok2 := obj.(*cached)
			if ok1 && ok2 && o.sameState(n) {
				return
			}
			notify(obj)
		},
		DeleteFunc: notify,
	}); err != nil {
		return nil, fmt.Errorf("vmi informer: %w", err)
	}
	return w, nil
}

// Start starts the watch in the background; it runs until ctx ends.
func (w *Watcher) Start(ctx context.Context) {
	w.wg.Go(func() { w.informer.RunWithContext(ctx) })
}

// Shutdown waits for the watch to stop after the context given to Start ended.
func (w *Watcher) Shutdown() {
	w.wg.Wait()
}

// HasSynced says whether the first full list has been read.
func (w *Watcher) HasSynced() bool {
	return w.informer.HasSynced()
}

// Get returns the cached VMI for key, if the node has it.
func (w *Watcher) Get(key string) (*VMI, bool) {
	obj, ok, err := w.informer.GetStore().GetByKey(key)
	if err != nil || !ok {
		return nil, false
	}
	c, ok := obj.(*cached)
	if !ok {
		return nil, false
	}
	return c.vmi(), true
}

// List returns every cached VMI.
func (w *Watcher) List() []*VMI {
	objs := w.informer.GetStore().List()
	out := make([]*VMI, 0, len(objs))
	for _, obj := range objs {
		if c, ok := obj.(*cached); ok {
			out = append(out, c.vmi())
		}
	}
	return out
}

// slim is the informer's transform: it replaces each decoded VMI with its packed slim
// view before it enters the cache, so the cache never holds whole VMI objects.
func (w *Watcher) slim(obj any) (any, error) {
	switch o := obj.(type) {
	case *unstructured.Unstructured:
		return compact(FromUnstructured(o), &w.names), nil
	case cache.DeletedFinalStateUnknown:
		if u, ok := o.Obj.(*unstructured.Unstructured); ok {
			o.Obj = compact(FromUnstructured(u), &w.names)
		}
		return o, nil
	default:
		return obj, nil
	}
}
