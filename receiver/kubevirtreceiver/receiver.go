package kubevirtreceiver

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/receiver"
	"go.uber.org/zap"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/util/workqueue"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/domain"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/faultlog"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/hypervisor"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/kube"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/launcher"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/series"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/vmi"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/metadata"
)

// workers bounds how many VMIs are detected at once. Detection is a short local RPC, so
// a few workers keep up with hundreds of transitions a second.
const workers = 4

// faultInterval is how often a lasting libvirt outage is logged again.
const faultInterval = time.Minute

// libvirtRecovered ends a libvirt outage in the log.
const libvirtRecovered = "libvirt reachable again for every VMI"

// isLibvirtUnreachable says whether a detection error means libvirt could not be asked
// (as opposed to an answer the receiver could not use).
func isLibvirtUnreachable(err error) bool {
	return !errors.Is(err, domain.ErrNotFound) && !errors.Is(err, domain.ErrInvalidXML)
}

// libvirtHint says what to check when libvirt cannot be reached.
func libvirtHint(source string) string {
	if source == SourceLauncher {
		return "check that the launcher pod's libvirt socket in the error exists and that the collector may open it " +
			"(the DaemonSet's /pods mount and its DAC_OVERRIDE capability, deploy/kubernetes/daemonset.yaml)"
	}
	return "check that libvirt runs at libvirt.uri and that the collector may connect to it"
}

// Retries of a VMI whose domain is missing or whose libvirt failed back off from
// retryBase up to retryMax.
const (
	retryBase = 200 * time.Millisecond
	retryMax  = 30 * time.Second
)

// kubevirtReceiver wires the flow: VMI events and libvirt domain events -> work queue
// -> detection -> series set -> emitter -> next consumer.
type kubevirtReceiver struct {
	cfg    *Config
	set    receiver.Settings
	logger *zap.Logger
	next   consumer.Metrics

	series *series.Set
	stats  *detectionStats
	// selfChanged wakes the emitter when a self-metric changed without any series
	// changing (a failed detection, the watch failing or recovering), so that the
	// endpoint shows it within a second rather than at the next collection_interval.
	selfChanged chan struct{}
	// libvirtFaults logs libvirt being unreachable without a line per VMI and retry.
	libvirtFaults *faultlog.Tracker
	// retryBase and retryMax are fields so that tests can take retries out of the way.
	retryBase, retryMax time.Duration

	queue   workqueue.TypedRateLimitingInterface[string]
	domains domain.Reader
	watcher *vmi.Watcher

	// known remembers each VMI's last detected type and the launcher pods it was
	// detected for: a running domain's hypervisor cannot change while its pod lives,
	// so a later libvirt outage does not turn it into unknown.
	knownMu sync.Mutex
	known   map[string]knownType

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type knownType struct {
	pods string
	typ  hypervisor.Type
}

func newReceiver(set receiver.Settings, cfg *Config, next consumer.Metrics) *kubevirtReceiver {
	return &kubevirtReceiver{
		cfg:         cfg,
		set:         set,
		logger:      set.Logger,
		next:        next,
		series:      series.NewSet(),
		stats:       newDetectionStats(),
		selfChanged: make(chan struct{}, 1),
		retryBase:   retryBase,
		retryMax:    retryMax,
		known:       map[string]knownType{},
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
	// The queue exists before anything can call enqueue, and nothing after it can fail.
	r.libvirtFaults = faultlog.New(r.logger, faultInterval)
	r.watcher, err = vmi.NewWatcher(client, r.cfg.NodeName, r.logger,
		vmi.WatcherHandlers{Changed: r.enqueue, HealthChanged: r.selfMetricsChanged})
	if err != nil {
		return err
	}
	r.queue = workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[string](r.retryBase, r.retryMax),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "kubevirt-vmi"},
	)
	handlers := domain.ReaderHandlers{DomainStarted: r.domainStarted, Reconnected: r.libvirtConnected}
	switch r.cfg.Libvirt.Source {
	case SourceLauncher:
		r.domains = domain.NewLauncherReader(r.cfg.Libvirt.PodsDir, r.cfg.NodeName, r.cfg.Libvirt.Timeout, handlers)
	default:
		r.domains = domain.NewURIReader(r.cfg.Libvirt.URI, r.cfg.Libvirt.Timeout, handlers)
	}

	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.watcher.Start(ctx)
	r.wg.Go(func() { r.domains.Run(ctx) })
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
	r.domains.Close()
	return nil
}

// enqueue asks for the VMI key to be detected (again).
func (r *kubevirtReceiver) enqueue(key string) { r.queue.Add(key) }

// selfMetricsChanged asks the emitter for a batch soon; it never blocks.
func (r *kubevirtReceiver) selfMetricsChanged() {
	select {
	case r.selfChanged <- struct{}{}:
	default:
	}
}

// failed counts a failed detection and has it shown soon.
func (r *kubevirtReceiver) failed(reason metadata.AttributeReason) {
	r.stats.fail(reason)
	r.selfMetricsChanged()
}

// domainStarted queues the VMI behind a domain that started, resumed, was restored or
// migrated in.
func (r *kubevirtReceiver) domainStarted(name string) {
	if ns, n, ok := domain.SplitName(name); ok {
		r.enqueue(ns + "/" + n)
	}
}

// libvirtConnected queues again the VMIs that libvirt could not answer for (reported
// unknown, or Running without a series), now that it can: the VMI key whose launcher
// connected, or every VMI ("") when one libvirt serves them all. Their backoff is
// reset: the reason for it is gone.
func (r *kubevirtReceiver) libvirtConnected(key string) {
	if key != "" {
		r.retryUnanswered(key)
		return
	}
	for _, v := range r.watcher.List() {
		if ok, _ := v.Reportable(r.cfg.NodeName); ok {
			r.retryUnanswered(v.Key())
		}
	}
}

func (r *kubevirtReceiver) retryUnanswered(key string) {
	if s, ok := r.series.Get(key); ok && s.Type != hypervisor.Unknown {
		return
	}
	r.queue.Forget(key)
	r.enqueue(key)
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
		r.forget(key)
		return nil
	}
	if ok, why := v.Reportable(r.cfg.NodeName); !ok {
		r.logger.Debug("VMI not reported", zap.String("vmi", key), zap.String("reason", why))
		r.forget(key)
		return nil
	}
	s := series.Series{Namespace: validUTF8(v.Namespace), Name: validUTF8(v.Name), Node: validUTF8(v.NodeName)}
	pods := strings.Join(v.LauncherPods(r.cfg.NodeName), ",")
	name := domain.Name(v.Namespace, v.Name)

	// Observed last, so that anyone who sees the count go up also sees the outcome.
	defer func(start time.Time) { r.stats.duration.Observe(time.Since(start)) }(time.Now())
	res, err := r.domains.Detect(ctx, key, launcher.VMI{
		Namespace: v.Namespace, Name: v.Name, ActivePods: v.ActivePods, RuntimeUser: v.RuntimeUser,
	})
	if err == nil || !isLibvirtUnreachable(err) {
		r.libvirtFaults.Recover(key, libvirtRecovered)
	}
	switch {
	case errors.Is(err, domain.ErrInvalidXML):
		r.failed(metadata.AttributeReasonInvalidXML)
		r.logger.Warn("Failed to parse domain XML; reporting unknown", zap.String("vmi", key), zap.Error(err))
		r.logger.Debug("Domain XML", zap.String("vmi", key), zap.String("from", res.From), zap.String("xml", res.XML))
		s.Type = hypervisor.Unknown
		r.series.Put(key, s)
		return nil
	case errors.Is(err, domain.ErrNotFound):
		// Running in Kubernetes before libvirt has started the domain: wait for it.
		r.failed(metadata.AttributeReasonDomainMissing)
		r.logger.Debug("Domain not running yet; will retry", zap.String("vmi", key), zap.String("domain", name), zap.Error(err))
		r.series.Delete(key)
		return errRetry
	case err != nil:
		r.failed(metadata.AttributeReasonLibvirtUnreachable)
		// Logged once when libvirt becomes unreachable and then at most every
		// faultInterval, not for every VMI and retry.
		if k, ok := r.knownType(key); ok && k.pods == pods && k.typ != hypervisor.Unknown {
			r.libvirtFaults.Fail(key, metadata.AttributeReasonLibvirtUnreachable.String(),
				"Failed to detect hypervisor; keeping the type known for this launcher",
				zap.String("vmi", key), zap.String("hypervisor_type", string(k.typ)), zap.String("hint", libvirtHint(r.cfg.Libvirt.Source)), zap.Error(err))
			s.Type = k.typ
		} else {
			r.libvirtFaults.Fail(key, metadata.AttributeReasonLibvirtUnreachable.String(),
				"Failed to detect hypervisor; reporting unknown",
				zap.String("vmi", key), zap.String("hint", libvirtHint(r.cfg.Libvirt.Source)), zap.Error(err))
			s.Type = hypervisor.Unknown
		}
		r.series.Put(key, s)
		return errRetry
	case res.Type == hypervisor.Unknown:
		r.failed(metadata.AttributeReasonUnsupportedType)
		r.logger.Warn("Unsupported domain type; reporting unknown", zap.String("vmi", key), zap.String("domain_type", res.DomainType))
		r.logger.Debug("Domain XML", zap.String("vmi", key), zap.String("from", res.From), zap.String("xml", res.XML))
	default:
		r.logger.Debug("Detected hypervisor", zap.String("vmi", key), zap.String("hypervisor_type", string(res.Type)), zap.String("from", res.From))
	}
	s.Type = res.Type
	r.series.Put(key, s)
	r.remember(key, knownType{pods: pods, typ: res.Type})
	return nil
}

func (r *kubevirtReceiver) knownType(key string) (knownType, bool) {
	r.knownMu.Lock()
	defer r.knownMu.Unlock()
	k, ok := r.known[key]
	return k, ok
}

func (r *kubevirtReceiver) remember(key string, k knownType) {
	r.knownMu.Lock()
	defer r.knownMu.Unlock()
	r.known[key] = k
}

// forget removes the VMI's series, what was known about it and its launcher connection.
func (r *kubevirtReceiver) forget(key string) {
	r.libvirtFaults.Recover(key, libvirtRecovered)
	r.series.Delete(key)
	r.domains.Forget(key)
	r.knownMu.Lock()
	delete(r.known, key)
	r.knownMu.Unlock()
}

// validUTF8 keeps label values valid whatever an object holds; Kubernetes names are
// ASCII, so this changes nothing in practice.
func validUTF8(s string) string {
	return strings.ToValidUTF8(s, "\uFFFD")
}
