package vmi

import (
	"context"
	"fmt"
	"sync"

	"go.uber.org/zap"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

// Watcher keeps a cache of the VMIs labelled for one node and reports the key of every
// VMI that is added, changed or deleted. A VMI whose node label moves to another node
// (a completed migration) leaves the selection and is reported as deleted. It also
// follows whether the watch works (Health) and logs when it stops and starts working.
type Watcher struct {
	informer cache.SharedIndexInformer
	health   *health
	node     string
	wg       sync.WaitGroup
}

// WatcherHandlers are told what happens to the watch. Neither may block.
type WatcherHandlers struct {
	// Changed receives the key (namespace/name) of each VMI that was added, changed or
	// deleted.
	Changed func(key string)
	// HealthChanged, if set, is called after every failed request and whenever Health's
	// Synced may have changed.
	HealthChanged func()
}

// NewWatcher prepares a watch of node's VMIs on the API server cfg points to.
func NewWatcher(cfg *rest.Config, node string, logger *zap.Logger, h WatcherHandlers) (*Watcher, error) {
	selector := labels.Set{NodeLabel: node}.AsSelector().String()
	changed := h.HealthChanged
	if changed == nil {
		changed = func() {}
	}
	w := &Watcher{health: newHealth(logger, selector, changed), node: node}
	client, err := newVMIClient(cfg)
	if err != nil {
		return nil, err
	}
	// Every request goes through here, so every failure is seen, whatever the
	// reflector then does with it (see health).
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.LabelSelector = selector
			w.health.requesting()
			list, err := client.list(ctx, o)
			w.health.listed(ctx, err)
			return list, err
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.LabelSelector = selector
			w.health.requesting()
			wi, err := client.watch(ctx, o)
			w.health.watched(ctx, err)
			if err != nil {
				return nil, err
			}
			return &followedWatch{Interface: wi, closed: w.health.closed}, nil
		},
	}
	// Built by hand rather than by an informer factory, which adds a namespace index
	// the receiver never uses (one more map entry per VMI).
	w.informer = cache.NewSharedIndexInformerWithOptions(
		cache.ToListWatcherWithWatchListSemantics(lw, client.rest),
		&VMI{},
		cache.SharedIndexInformerOptions{ObjectDescription: Resource.String()},
	)
	w.health.synced = w.informer.HasSynced
	if err := w.informer.SetTransform(w.transform); err != nil {
		return nil, fmt.Errorf("vmi informer: %w", err)
	}
	// Replaces client-go's default handler, which would write to stderr through klog.
	if err := w.informer.SetWatchErrorHandlerWithContext(func(ctx context.Context, _ *cache.Reflector, err error) {
		w.health.onError(ctx, err)
	}); err != nil {
		return nil, fmt.Errorf("vmi informer: %w", err)
	}
	onChange := h.Changed
	notify := func(obj any) {
		switch o := obj.(type) {
		case *VMI:
			onChange(o.Key())
		case cache.DeletedFinalStateUnknown:
			onChange(o.Key)
		}
	}
	if _, err := w.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: notify,
		UpdateFunc: func(old, obj any) {
			o, ok1 := old.(*VMI)
			n, ok2 := obj.(*VMI)
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
	w.health.started()
	w.wg.Go(func() { w.informer.RunWithContext(ctx) })
	// Nothing else tells when the first list has been read into the cache.
	w.wg.Go(func() {
		if cache.WaitForCacheSync(ctx.Done(), w.informer.HasSynced) {
			w.health.becameSynced()
		}
	})
}

// Health says whether the watch works, and since when it has not.
func (w *Watcher) Health() Health {
	return w.health.snapshot()
}

// Shutdown waits for the watch to stop after the context given to Start ended.
func (w *Watcher) Shutdown() {
	w.wg.Wait()
}

// Get returns the cached VMI for key, if the node has it. It is the cache's own:
// never modify it.
func (w *Watcher) Get(key string) (*VMI, bool) {
	obj, ok, err := w.informer.GetStore().GetByKey(key)
	if err != nil || !ok {
		return nil, false
	}
	v, ok := obj.(*VMI)
	return v, ok
}

// transform is the informer's: it gives each decoded VMI its launcher pods on the
// watcher's node before it enters the cache.
func (w *Watcher) transform(obj any) (any, error) {
	switch o := obj.(type) {
	case *VMI:
		o.forNode(w.node)
	case cache.DeletedFinalStateUnknown:
		if v, ok := o.Obj.(*VMI); ok {
			v.forNode(w.node)
		}
	}
	return obj, nil
}

// followedWatch tells health when the reflector is done with a watch: it stops every
// watch it is done with, whatever ended it.
type followedWatch struct {
	watch.Interface
	closed func()
	once   sync.Once
}

func (f *followedWatch) Stop() {
	f.Interface.Stop()
	f.once.Do(f.closed)
}
