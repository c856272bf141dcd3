package vmi

import (
	"context"
	"fmt"

	"go.uber.org/zap"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"
)

// Watcher keeps a cache of the VMIs labelled for one node and reports the key of every
// VMI that is added, changed or deleted. A VMI whose node label moves to another node
// (a completed migration) leaves the selection and is reported as deleted.
type Watcher struct {
	factory  dynamicinformer.DynamicSharedInformerFactory
	informer cache.SharedIndexInformer
}

// NewWatcher prepares a watch of node's VMIs through client. onChange receives VMI keys
// (namespace/name) and must not block.
func NewWatcher(client dynamic.Interface, node string, logger *zap.Logger, onChange func(key string)) (*Watcher, error) {
	selector := labels.Set{NodeLabel: node}.AsSelector().String()
	factory := dynamicinformer.NewFilteredDynamicSharedInformerFactory(client, 0, metav1.NamespaceAll,
		func(o *metav1.ListOptions) { o.LabelSelector = selector })
	informer := factory.ForResource(Resource).Informer()
	if err := informer.SetTransform(slim); err != nil {
		return nil, fmt.Errorf("vmi informer: %w", err)
	}
	// The reflector retries on its own; this routes its complaints (API server down,
	// CRD missing, RBAC) to the collector's log instead of klog.
	if err := informer.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
		logger.Warn("Watching VirtualMachineInstances failed; retrying", zap.String("label_selector", selector), zap.Error(err))
	}); err != nil {
		return nil, fmt.Errorf("vmi informer: %w", err)
	}
	notify := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			onChange(key)
		}
	}
	if _, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    notify,
		UpdateFunc: func(old, obj any) {
			o, ok1 := old.(*VMI)
			n, ok2 := obj.(*VMI)
			if ok1 && ok2 && o.SameState(n) {
				return
			}
			notify(obj)
		},
		DeleteFunc: notify,
	}); err != nil {
		return nil, fmt.Errorf("vmi informer: %w", err)
	}
	return &Watcher{factory: factory, informer: informer}, nil
}

// Start starts the watch in the background; it runs until Shutdown.
func (w *Watcher) Start(ctx context.Context) {
	w.factory.Start(ctx.Done())
}

// Shutdown waits for the watch to stop after the context given to Start ended.
func (w *Watcher) Shutdown() {
	w.factory.Shutdown()
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
	v, ok := obj.(*VMI)
	return v, ok
}

// List returns every cached VMI.
func (w *Watcher) List() []*VMI {
	objs := w.informer.GetStore().List()
	out := make([]*VMI, 0, len(objs))
	for _, obj := range objs {
		if v, ok := obj.(*VMI); ok {
			out = append(out, v)
		}
	}
	return out
}

// slim is the informer's transform: it replaces each decoded VMI with its slim view
// before it enters the cache, so the cache never holds whole VMI objects.
func slim(obj any) (any, error) {
	switch o := obj.(type) {
	case *unstructured.Unstructured:
		return FromUnstructured(o), nil
	case cache.DeletedFinalStateUnknown:
		if u, ok := o.Obj.(*unstructured.Unstructured); ok {
			o.Obj = FromUnstructured(u)
		}
		return o, nil
	default:
		return obj, nil
	}
}
