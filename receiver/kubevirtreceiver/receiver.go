package kubevirtreceiver

import (
	"context"
	"sync"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/receiver"
	"go.uber.org/zap"
	"k8s.io/client-go/util/workqueue"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/detect"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/faultlog"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/hypervisor"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/inventory"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/kube"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/vmi"
)

// workers bounds how many VMIs are reconciled at once. Detection is a short local RPC, so
// a few workers keep up with hundreds of transitions a second.
const workers = 4

// Retries of a VMI whose domain is missing or whose libvirt failed back off from
// retryBase up to retryMax. A domain that starts is not waited for: libvirt's
// lifecycle event queues its VMI at once.
const (
	retryBase = 200 * time.Millisecond
	retryMax  = 30 * time.Second
)

// kubevirtReceiver wires the flow: VMI events and libvirt domain events -> work queue
// -> reconcile (detection) -> inventory -> emitter -> next consumer.
type kubevirtReceiver struct {
	cfg    *Config
	set    receiver.Settings
	logger *zap.Logger
	next   consumer.Metrics

	inventory *inventory.Inventory
	stats     *detectionStats
	// selfChanged wakes the emitter when a self-metric changed (a detection, the watch
	// failing or recovering), so that the endpoint shows it within a second rather
	// than at the next collection_interval.
	selfChanged chan struct{}
	// libvirtFaults logs libvirt being unreachable without a line per VMI and retry.
	libvirtFaults *faultlog.Tracker

	queue   workqueue.TypedRateLimitingInterface[string]
	reader  detect.Reader
	vmis    vmiGetter
	watcher *vmi.Watcher

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// vmiGetter is where reconcile looks VMIs up: the watch's cache.
type vmiGetter interface {
	Get(key string) (*vmi.VMI, bool)
}

func newReceiver(set receiver.Settings, cfg *Config, next consumer.Metrics) *kubevirtReceiver {
	return &kubevirtReceiver{
		cfg:         cfg,
		set:         set,
		logger:      set.Logger,
		next:        next,
		inventory:   inventory.New(),
		stats:       newDetectionStats(),
		selfChanged: make(chan struct{}, 1),
	}
}

// newReader reads domains where libvirt.source says.
func newReader(cfg *Config, h detect.Handlers) detect.Reader {
	if cfg.Libvirt.Source == SourceLauncher {
		return detect.NewLauncherReader(cfg.Libvirt.PodsDir, cfg.Libvirt.Timeout, h)
	}
	return detect.NewURIReader(cfg.Libvirt.URI, cfg.Libvirt.Timeout, h)
}

// Start begins watching VMIs. It fails only on configuration it cannot use; an API
// server or libvirt that is not reachable yet is logged and retried in the background.
func (r *kubevirtReceiver) Start(_ context.Context, _ component.Host) error {
	restCfg, err := kube.RESTConfig(r.cfg.AuthType, r.cfg.Context)
	if err != nil {
		return err
	}
	// The queue exists before anything can call enqueue, and nothing after it can fail.
	r.libvirtFaults = faultlog.New(r.logger, faultInterval)
	r.watcher, err = vmi.NewWatcher(restCfg, r.cfg.NodeName, r.logger,
		vmi.WatcherHandlers{Changed: r.enqueue, HealthChanged: r.selfMetricsChanged})
	if err != nil {
		return err
	}
	r.vmis = r.watcher
	r.queue = workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[string](retryBase, retryMax),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "kubevirt-vmi"},
	)
	r.reader = newReader(r.cfg, detect.Handlers{DomainStarted: r.domainStarted, Connected: r.connected})

	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.watcher.Start(ctx)
	r.wg.Go(func() { r.reader.Run(ctx) })
	for range workers {
		r.wg.Go(func() { r.work(ctx) })
	}
	r.wg.Go(func() { r.emitLoop(ctx) })
	r.logger.Info("Watching VirtualMachineInstances", zap.String("node_name", r.cfg.NodeName),
		zap.String("libvirt_source", r.cfg.Libvirt.Source), zap.String("libvirt_uri", r.cfg.Libvirt.URI),
		zap.String("pods_dir", r.cfg.Libvirt.PodsDir))
	return nil
}

// Shutdown stops the watch, the workers and the emitter and closes libvirt.
func (r *kubevirtReceiver) Shutdown(context.Context) error {
	if r.cancel == nil {
		return nil
	}
	r.cancel()
	r.queue.ShutDown()
	r.watcher.Shutdown()
	r.wg.Wait()
	r.reader.Close()
	return nil
}

// enqueue asks for the VMI key to be reconciled (again).
func (r *kubevirtReceiver) enqueue(key string) { r.queue.Add(key) }

// selfMetricsChanged asks the emitter for the self-metrics soon; it never blocks.
func (r *kubevirtReceiver) selfMetricsChanged() {
	select {
	case r.selfChanged <- struct{}{}:
	default:
	}
}

// domainStarted queues the VMI key whose domain started, resumed, was restored or
// migrated in.
func (r *kubevirtReceiver) domainStarted(key string) { r.enqueue(key) }

// connected queues again the VMIs that libvirt could not answer for (reported unknown,
// or Running without a series), now that it can: the VMI key whose launcher connected,
// or every VMI ("") when one libvirt serves them all. Their backoff is reset: the
// reason for it is gone.
func (r *kubevirtReceiver) connected(key string) {
	if key != "" {
		r.retryUnanswered(key)
		return
	}
	for _, key := range r.inventory.Unanswered() {
		r.retryUnanswered(key)
	}
}

func (r *kubevirtReceiver) retryUnanswered(key string) {
	if rec, ok := r.inventory.Get(key); ok && rec.Reported != "" && rec.Reported != hypervisor.Unknown {
		return
	}
	r.queue.Forget(key)
	r.enqueue(key)
}

// work reconciles queued VMIs until the queue shuts down. The queue hands a key to one
// worker at a time, so a VMI is never reconciled twice at once: its record and its
// reads have one writer.
func (r *kubevirtReceiver) work(ctx context.Context) {
	for {
		key, shutdown := r.queue.Get()
		if shutdown {
			return
		}
		if retry := r.reconcile(ctx, key); retry {
			r.queue.AddRateLimited(key)
		} else {
			r.queue.Forget(key)
		}
		r.queue.Done(key)
	}
}
