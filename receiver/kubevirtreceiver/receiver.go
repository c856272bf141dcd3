package kubevirtreceiver

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/receiver"
	"go.uber.org/zap"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/util/workqueue"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/domain"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/hypervisor"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/kube"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/series"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/vmi"
)

// workers bounds how many VMIs are detected at once. Detection is a short local RPC, so
// a few workers keep up with hundreds of transitions a second.
const workers = 4

// Retries of a VMI whose domain is missing or whose libvirt failed back off from
// retryBase up to retryMax.
const (
	retryBase = 200 * time.Millisecond
	retryMax  = 30 * time.Second
)

// kubevirtReceiver wires the flow: VMI events -> work queue -> detection -> series set
// -> emitter -> next consumer.
type kubevirtReceiver struct {
	cfg    *Config
	set    receiver.Settings
	logger *zap.Logger
	next   consumer.Metrics

	series  *series.Set
	queue   workqueue.TypedRateLimitingInterface[string]
	domains *domain.Client
	watcher *vmi.Watcher

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newReceiver(set receiver.Settings, cfg *Config, next consumer.Metrics) *kubevirtReceiver {
	return &kubevirtReceiver{
		cfg:    cfg,
		set:    set,
		logger: set.Logger,
		next:   next,
		series: series.NewSet(),
	}
}

// Start begins watching VMIs. It fails only on configuration it cannot use; an API
// server or libvirt that is not reachable yet is logged and retried in the background.
func (r *kubevirtReceiver) Start(_ context.Context, _ component.Host) error {
	restCfg, err := kube.RESTConfig(r.cfg.AuthType, r.cfg.Context)
	if err != nil {
		return err
	}
	client, err := dynamic.NewForConfig(restCfg)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	r.queue = workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[string](retryBase, retryMax),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "kubevirt-vmi"},
	)
	r.watcher, err = vmi.NewWatcher(client, r.cfg.NodeName, r.logger, r.queue.Add)
	if err != nil {
		return err
	}
	r.domains = domain.NewClient(r.cfg.Libvirt.URI, r.cfg.Libvirt.Timeout)

	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.watcher.Start(ctx)
	for range workers {
		r.wg.Go(func() { r.work(ctx) })
	}
	r.wg.Go(func() { r.emitLoop(ctx) })
	r.logger.Info("Watching VirtualMachineInstances",
		zap.String("node_name", r.cfg.NodeName), zap.String("libvirt_uri", r.cfg.Libvirt.URI))
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
	return r.domains.Close()
}

// work detects queued VMIs until the queue shuts down. The queue hands a key to one
// worker at a time, so a VMI is never detected twice at once.
func (r *kubevirtReceiver) work(ctx context.Context) {
	for {
		key, shutdown := r.queue.Get()
		if shutdown {
			return
		}
		if err := r.sync(ctx, key); err != nil {
			r.queue.AddRateLimited(key)
		} else {
			r.queue.Forget(key)
		}
		r.queue.Done(key)
	}
}

// errRetry asks for the VMI to be detected again later.
var errRetry = errors.New("retry")

// sync brings the series of the VMI key in line with the cluster and libvirt.
func (r *kubevirtReceiver) sync(ctx context.Context, key string) error {
	v, ok := r.watcher.Get(key)
	if !ok {
		r.series.Delete(key)
		return nil
	}
	if ok, why := v.Reportable(r.cfg.NodeName); !ok {
		r.logger.Debug("VMI not reported", zap.String("vmi", key), zap.String("reason", why))
		r.series.Delete(key)
		return nil
	}
	s := series.Series{Namespace: v.Namespace, Name: v.Name, Node: v.NodeName}
	name := domain.Name(v.Namespace, v.Name)

	xml, err := r.domains.DomainXML(ctx, name)
	switch {
	case errors.Is(err, domain.ErrNotFound):
		// Running in Kubernetes before libvirt has started the domain: wait for it.
		r.logger.Debug("Domain not running yet; will retry", zap.String("vmi", key), zap.String("domain", name))
		r.series.Delete(key)
		return errRetry
	case err != nil:
		r.logger.Warn("Failed to detect hypervisor", zap.String("vmi", key), zap.String("domain", name), zap.Error(err))
		if old, had := r.series.Get(key); had && old.Type != hypervisor.Unknown && old.Node == s.Node {
			return errRetry // a running domain's hypervisor cannot change: keep what we know
		}
		s.Type = hypervisor.Unknown
		r.series.Put(key, s)
		return errRetry
	}
	det, err := hypervisor.Detect(xml)
	switch {
	case err != nil:
		r.logger.Warn("Failed to parse domain XML; reporting unknown", zap.String("vmi", key), zap.Error(err))
	case det.Type == hypervisor.Unknown:
		r.logger.Warn("Unsupported domain type; reporting unknown", zap.String("vmi", key), zap.String("domain_type", det.DomainType))
	default:
		r.logger.Debug("Detected hypervisor", zap.String("vmi", key), zap.String("hypervisor_type", string(det.Type)))
	}
	s.Type = det.Type
	r.series.Put(key, s)
	return nil
}
