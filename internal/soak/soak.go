package soak

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv"
)

// Options says how to soak.
type Options struct {
	// Duration is how long the soak makes changes (SOAK_TIME). Setting up, the warm-up
	// and the final drain come on top.
	Duration time.Duration
	// Seed seeds every choice (SOAK_SEED); 0 picks one. The same seed and Duration
	// replay the same changes.
	Seed uint64
	// Bin is the collector binary.
	Bin string
	// Dir receives the collectors' logs and the test driver's node file.
	Dir string
	// Settle is how long every endpoint must keep equal to the oracle at a quiet point
	// (plus a random part of as much again): the receiver sends a change as soon as
	// it has detected it, so an endpoint about to move away shows it well within a
	// second. Default 1 s.
	Settle time.Duration
	// MaxLaunchers bounds the launcher pods (each a libvirtd and a QEMU) at once.
	// Default 6.
	MaxLaunchers int
	// MaxRealVMIs bounds the VMIs with launcher pods at once. Default 4.
	MaxRealVMIs int
	// Logf receives progress and mismatches as they happen.
	Logf func(format string, args ...any)
	// Verbose logs every change as it is made.
	Verbose bool
}

func (o *Options) defaults() error {
	if o.Duration <= 0 {
		return errors.New("soak: Duration must be positive")
	}
	if o.Bin == "" || o.Dir == "" {
		return errors.New("soak: Bin and Dir must be set")
	}
	if o.Seed == 0 {
		var b [8]byte
		if _, err := crand.Read(b[:]); err != nil {
			return err
		}
		o.Seed = binary.LittleEndian.Uint64(b[:])
	}
	if o.Settle <= 0 {
		o.Settle = time.Second
	}
	if o.MaxLaunchers <= 0 {
		o.MaxLaunchers = 6
	}
	if o.MaxRealVMIs <= 0 {
		o.MaxRealVMIs = 4
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	return nil
}

// soak is one run.
type soak struct {
	opts    Options
	started time.Time
	rng     *rand.Rand
	world   *World
	report  *Report

	api        *testenv.APIServer
	client     dynamic.Interface
	proxy      *testenv.APIProxy
	nodes      map[string]*testenv.Node
	pods       map[string]*testenv.LauncherPod // by pod UID
	collectors []*collector
	kvm        bool

	// cycle counts bursts; API faults come at most every apiEvery of them.
	cycle, lastAPIFault, apiEvery int
	// done holds the kinds of action applied at least once.
	done map[string]bool
	// burst describes the changes since the last quiet point, bound is the largest of
	// their recovery bounds.
	burst []string
	bound time.Duration
	// depth is how deep in an action's changes (those during an outage) apply is.
	depth int
	// want is what the endpoints must show as of the last operation.
	want map[string]map[Series]bool
	// changedAt is when the burst's last operation that altered want ended (or the
	// outage that hid it from the collectors, or broke their watches); zero if none.
	changedAt time.Time
	// cutOff says the collectors cannot reach the API server: what changes meanwhile
	// counts from when they can again.
	cutOff bool
	// probe looks for the endpoints to show want from changedAt on, while the burst
	// goes on with operations that alter nothing.
	probe *probe
	// canaries follows the canaries while they are Running, from the end of an API
	// server fault to the quiet point; nil otherwise.
	canaries *canaryWatch
}

// collector is one node's otelcol-kubevirt process.
type collector struct {
	*testenv.Collector
	node string
	// zapLog is the collector's own log; its stderr (testenv's LogPath) holds the Go
	// runtime's trace.
	zapLog string
}

// logTail is the end of the collector's log, for mismatch and failure reports.
func (c *collector) logTail() string {
	b, err := os.ReadFile(c.zapLog)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 25 {
		lines = lines[len(lines)-25:]
	}
	return fmt.Sprintf("--- end of the %s collector's log (%s):\n%s", c.node, c.zapLog, strings.Join(lines, "\n"))
}

func (s *soak) collectorByNode(node string) *collector {
	for _, c := range s.collectors {
		if c.node == node {
			return c
		}
	}
	return nil
}

func (s *soak) logf(format string, args ...any) {
	s.opts.Logf("%8s %s", time.Since(s.started).Round(100*time.Millisecond), fmt.Sprintf(format, args...))
}

// Run sets everything up, warms up, soaks for opts.Duration, drains and reports. The
// report is returned even with an error, holding what was seen until then. Mismatches
// and resources that grew are in the report, not errors: errors are about the soak
// itself (a part that would not start, an endpoint that never matched again).
func Run(ctx context.Context, opts Options) (*Report, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	s := &soak{
		opts:    opts,
		started: time.Now(),
		rng:     rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x9e3779b97f4a7c15)),
		world:   NewWorld(),
		report:  newReport(opts),
		nodes:   map[string]*testenv.Node{},
		pods:    map[string]*testenv.LauncherPod{},
		done:    map[string]bool{},
		// Spaced by about two minutes in long runs, when client-go's reflector has
		// reset its backoff; short runs get two or three.
		apiEvery: 5,
	}
	if opts.Duration >= 5*time.Minute {
		s.apiEvery = 40
	}
	s.logf("soak: seed %d, %v (replay: SOAK_SEED=%d SOAK_TIME=%v)", opts.Seed, opts.Duration, opts.Seed, opts.Duration)
	start := time.Now()
	defer func() { s.report.Elapsed = time.Since(start) }()
	defer s.close()
	if err := s.setup(ctx); err != nil {
		return s.report, fmt.Errorf("setting up: %w", err)
	}
	s.logf("soak: set up in %v; KVM guests: %v", time.Since(start).Round(time.Millisecond), s.kvm)
	if err := s.startCanaries(ctx); err != nil {
		return s.report, fmt.Errorf("starting the canaries: %w", err)
	}
	s.report.KVM = s.kvm
	if err := s.warmUp(ctx); err != nil {
		return s.report, fmt.Errorf("warming up: %w", err)
	}
	before, err := s.measure(ctx)
	if err != nil {
		return s.report, err
	}
	for i, c := range s.collectors {
		s.report.Collectors[i].Start = before[c.node]
		s.logf("soak: %s at the start: %v", c.node, before[c.node])
	}

	loopStart := time.Now()
	s.report.loopStart = loopStart
	lastProgress := loopStart
	for time.Since(loopStart) < opts.Duration {
		if err := ctx.Err(); err != nil {
			return s.report, err
		}
		s.cycle++
		for range 1 + s.rng.IntN(3) {
			a := s.next(anything)
			if a == nil {
				break
			}
			if err := s.apply(ctx, a); err != nil {
				return s.report, fmt.Errorf("quiet point %d: %w (replay with SOAK_SEED=%d SOAK_TIME=%v)",
					s.report.QuietPoints+1, err, opts.Seed, opts.Duration)
			}
		}
		if err := s.quietPoint(ctx, time.Now()); err != nil {
			return s.report, err
		}
		if err := s.canariesBack(ctx); err != nil {
			return s.report, err
		}
		if time.Since(lastProgress) >= time.Minute {
			lastProgress = time.Now()
			s.logf("soak: %v: %s", time.Since(loopStart).Round(time.Second), s.report.progress())
		}
	}
	s.report.Duration = time.Since(loopStart)
	s.report.Expired = s.proxy.Expired.Load()

	if err := s.drain(ctx); err != nil {
		return s.report, fmt.Errorf("draining: %w", err)
	}
	after, err := s.measure(ctx)
	if err != nil {
		return s.report, err
	}
	for i, c := range s.collectors {
		s.report.Collectors[i].End = after[c.node]
		s.logf("soak: %s at the end: %v", c.node, after[c.node])
	}
	if err := s.maxGoroutines(); err != nil {
		return s.report, err
	}
	s.report.judge()
	return s.report, nil
}

// setup starts the API server, the proxy, the two launcher nodes and the three
// collectors.
func (s *soak) setup(ctx context.Context) error {
	var err error
	if s.api, err = testenv.StartAPIServer(ctx); err != nil {
		return err
	}
	// The soak's own client, without client-go's default 5 requests a second: it plays
	// KubeVirt's controllers, whose writes come in bursts.
	cfg := rest.CopyConfig(s.api.Config)
	cfg.QPS, cfg.Burst = -1, 0
	if s.client, err = dynamic.NewForConfig(cfg); err != nil {
		return err
	}
	for _, ns := range []string{RealNamespace, VolumeNamespace, CanaryNamespace} {
		_, err := s.api.Clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
	}
	if s.proxy, err = testenv.StartAPIProxy(s.api.Config, s.opts.Dir, nil); err != nil {
		return err
	}
	s.kvm, _ = testenv.KVMUsable()
	for _, node := range LauncherNodes {
		if s.nodes[node], err = testenv.StartNode(ctx, testenv.NodeOptions{NodeName: node}); err != nil {
			return err
		}
	}
	testDriver := filepath.Join(s.opts.Dir, "volume-node.xml")
	if err := os.WriteFile(testDriver, []byte(TestDriverNode()), 0o600); err != nil {
		return err
	}
	for _, node := range Nodes {
		var env []string
		if node == NodeVolume {
			env = []string{"LIBVIRT_SOURCE=uri", "LIBVIRT_URI=test://" + testDriver}
		} else {
			env = []string{"LIBVIRT_PODS_DIR=" + s.nodes[node].PodsDir()}
		}
		c, err := s.startCollector(ctx, node, env)
		if err != nil {
			return err
		}
		s.collectors = append(s.collectors, c)
		s.report.Collectors = append(s.report.Collectors, CollectorUsage{Node: node})
	}
	return nil
}

// startCollector runs bin/otelcol-kubevirt with the shipped configuration for node,
// through the proxy. An overlay only moves its log to a file of its own, so that its
// stderr holds the runtime trace alone.
func (s *soak) startCollector(ctx context.Context, node string, env []string) (*collector, error) {
	dir := filepath.Join(s.opts.Dir, node)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	zapLog := filepath.Join(dir, "otelcol.log")
	overlay := filepath.Join(dir, "soak-overlay.yaml")
	if err := os.WriteFile(overlay, fmt.Appendf(nil, "service:\n  telemetry:\n    logs:\n      output_paths: [%q]\n", zapLog), 0o600); err != nil {
		return nil, err
	}
	col, err := testenv.StartCollector(ctx, testenv.CollectorOptions{
		Bin:          s.opts.Bin,
		ExtraConfigs: []string{overlay},
		Dir:          dir,
		Env: append(env, runtimeTrace,
			"K8S_NODE_NAME="+node,
			"KUBEVIRT_AUTH_TYPE=kubeConfig",
			"KUBECONFIG="+s.proxy.Kubeconfig),
	})
	if err != nil {
		return nil, fmt.Errorf("collector of %s: %w", node, err)
	}
	return &collector{Collector: col, node: node, zapLog: zapLog}, nil
}

// close stops everything setup started, the collectors first.
func (s *soak) close() {
	for _, c := range s.collectors {
		if err := c.Stop(); err != nil {
			s.logf("stopping the collector of %s: %v", c.node, err)
		}
	}
	for node, n := range s.nodes {
		if err := n.Stop(); err != nil {
			s.logf("stopping node %s: %v", node, err)
		}
	}
	if s.proxy != nil {
		s.proxy.Close()
	}
	if s.api != nil {
		if err := s.api.Stop(); err != nil {
			s.logf("stopping the API server: %v", err)
		}
	}
}

// warmUp has every collector report VMIs once (a real one on each launcher node, some
// on the volume node), then drains: the collectors' lazily made parts (libvirt's event
// loop, connections) exist before resources are first measured.
func (s *soak) warmUp(ctx context.Context) error {
	for i, node := range LauncherNodes {
		v := &VMI{Namespace: RealNamespace, Name: fmt.Sprintf("vm-%d", i), Phase: PhasePending}
		if err := s.createVMI(ctx, v); err != nil {
			return err
		}
		l, err := s.startLauncher(ctx, v, node, []string{"kvm", "qemu"}[i%2])
		if err != nil {
			return err
		}
		v.Launchers, v.Node, v.Phase = []*Launcher{l}, node, PhaseRunning
		if err := s.writeVMI(ctx, v); err != nil {
			return err
		}
	}
	for i := range 8 {
		v := &VMI{Namespace: VolumeNamespace, Name: VolumeName(i), Volume: true, Phase: PhaseRunning, Node: NodeVolume}
		if err := s.createVMI(ctx, v); err != nil {
			return err
		}
	}
	s.burst = []string{"warm-up: two real VMIs and eight volume VMIs running"}
	if err := s.quietPoint(ctx, time.Now()); err != nil {
		return err
	}
	return s.drain(ctx)
}

// drain repairs every launcher, deletes every VMI but the canaries, with its pods, and
// checks that every endpoint is empty.
func (s *soak) drain(ctx context.Context) error {
	s.burst = []string{"drain: repair every launcher, delete every VMI"}
	for _, l := range s.world.Launchers() {
		if !l.Daemon {
			if err := s.startDaemon(ctx, l); err != nil {
				return err
			}
		}
		if !l.Socket {
			if err := s.restoreSocket(l); err != nil {
				return err
			}
		}
	}
	s.bound = libvirtBound
	for _, v := range s.world.Sorted() {
		if v.Canary {
			continue
		}
		if err := s.deleteVMI(ctx, v); err != nil {
			return err
		}
		for _, l := range v.Launchers {
			if err := s.teardown(l); err != nil {
				return err
			}
		}
	}
	return s.quietPoint(ctx, time.Now())
}

// measureWindow is how long nothing touches the collectors before their resources are
// read: connections of the last scrape are closed by then.
const measureWindow = time.Second

// measure reads each collector's resources while the soak leaves them alone: /proc at
// once, the goroutines from the first complete scheduler trace after that.
func (s *soak) measure(ctx context.Context) (map[string]Usage, error) {
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(measureWindow):
	}
	usage := map[string]Usage{}
	offsets := map[string]int64{}
	for _, c := range s.collectors {
		offsets[c.node] = fileSize(c.LogPath)
		u, err := procUsage(c.PID())
		if err != nil {
			return nil, err
		}
		usage[c.node] = u
	}
	// A trace is complete once the next one began: within two trace intervals.
	deadline := time.Now().Add(30 * time.Second)
	for _, c := range s.collectors {
		for {
			traces, heaps, err := readRuntimeTrace(c.LogPath)
			if err != nil {
				return nil, err
			}
			if g, ok := goroutinesAfter(traces, offsets[c.node]); ok {
				u := usage[c.node]
				u.Goroutines, u.HeapMB = g, heapBefore(heaps, offsets[c.node])
				usage[c.node] = u
				break
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("no scheduler trace from the collector of %s in %s: is %s honoured?", c.node, c.LogPath, runtimeTrace)
			}
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	return usage, nil
}

// sampleUsage keeps the largest file descriptor, thread and RSS figures seen at quiet
// points, in all and by quarter of the soak.
func (s *soak) sampleUsage() {
	for i, c := range s.collectors {
		u, err := procUsage(c.PID())
		if err != nil {
			continue // the next scrape says what happened to the collector
		}
		r := &s.report.Collectors[i]
		r.Max = maxUsage(r.Max, u)
		if !s.report.loopStart.IsZero() {
			q := int(4 * time.Since(s.report.loopStart) / s.opts.Duration)
			q = min(max(q, 0), len(r.Quarters)-1)
			r.Quarters[q] = maxUsage(r.Quarters[q], u)
		}
	}
}

// maxGoroutines reads the most goroutines each collector's trace ever listed.
func (s *soak) maxGoroutines() error {
	for i, c := range s.collectors {
		traces, _, err := readRuntimeTrace(c.LogPath)
		if err != nil {
			return err
		}
		s.report.Collectors[i].Max.Goroutines = maxGoroutines(traces)
	}
	return nil
}

func maxUsage(a, b Usage) Usage {
	return Usage{
		Goroutines: max(a.Goroutines, b.Goroutines), FDs: max(a.FDs, b.FDs), Threads: max(a.Threads, b.Threads),
		RSS: max(a.RSS, b.RSS), HeapMB: max(a.HeapMB, b.HeapMB),
	}
}

// The canaries prove, after every API server fault, that each collector follows the API
// server again, and measure how long it claims a synced watch while it does not. A
// collector that lists and watches again shows a VMI change within milliseconds; one
// that does not, shows nothing until it does, whatever its watch_synced says. Each node has a canary VMI, Scheduled (no series) except while
// checked: with a launcher pod and a running guest on the launcher nodes (whose status
// file answers at once), with a test-driver domain on the volume node. The generator
// never touches them, and they stay through the drain, so that the resources measured
// at the start and the end see the same.

// startCanaries creates every node's canary, Scheduled.
func (s *soak) startCanaries(ctx context.Context) error {
	for _, node := range Nodes {
		v := &VMI{Namespace: CanaryNamespace, Name: CanaryName(node), Canary: true, Phase: PhasePending, Volume: node == NodeVolume}
		if err := s.createVMI(ctx, v); err != nil {
			return err
		}
		if node != NodeVolume {
			l, err := s.startLauncher(ctx, v, node, "qemu")
			if err != nil {
				return err
			}
			v.Launchers = []*Launcher{l}
		}
		v.Node, v.Phase = node, PhaseScheduled
		if err := s.writeVMI(ctx, v); err != nil {
			return err
		}
	}
	return nil
}

// staleGrace is how long a collector may show watch_synced 1 without a canary change that
// went through the API server. A collector that follows shows the change within
// milliseconds (the status file, or the test driver, answer at once). One whose
// reflector holds no watch and asks for none (its backoff, up to a minute) must say
// so within 2 s: the receiver counts a second of that as not synced, and sends its
// self-metrics within a second of a change. But a request in flight counts as
// following, since the receiver cannot tell a slow answer from none, and a
// kube-apiserver that has just started answers a watch only once its watch cache is
// filled: up to 5 s here.
const staleGrace = 10 * time.Second

// canariesUp turns every canary Running at the end of an API server fault; until the
// quiet point, every scrape says when each collector showed its canary and how long it
// showed watch_synced 1 before.
func (s *soak) canariesUp(ctx context.Context) error {
	s.canaries = &canaryWatch{
		shown: map[string]time.Time{}, staleSince: map[string]time.Time{}, stale: map[string]time.Duration{},
	}
	s.burst = append(s.burst, strings.Repeat("  ", s.depth)+"canaries Running: does every collector follow the API server again?")
	for _, v := range s.world.Sorted() {
		if v.Canary {
			v.Phase = PhaseRunning
			if err := s.writeVMI(ctx, v); err != nil {
				return err
			}
		}
	}
	s.canaries.since = time.Now()
	return nil
}

// canariesBack turns the canaries back to Scheduled after a quiet point that checked
// them, with a quiet point of its own.
func (s *soak) canariesBack(ctx context.Context) error {
	up := false
	for _, v := range s.world.Sorted() {
		if v.Canary && v.Phase == PhaseRunning {
			up = true
			v.Phase = PhaseScheduled
			if err := s.writeVMI(ctx, v); err != nil {
				return err
			}
		}
	}
	if !up {
		return nil
	}
	s.burst = []string{"canaries Scheduled again"}
	return s.quietPoint(ctx, time.Now())
}

// canaryWatch is what the scrapes saw of the canaries since they turned Running. It is
// updated by one probe at a time and read at the quiet point, after the last probe.
type canaryWatch struct {
	since      time.Time
	shown      map[string]time.Time
	staleSince map[string]time.Time
	stale      map[string]time.Duration
}

// observe takes in a scrape of every endpoint.
func (c *canaryWatch) observe(now time.Time, got map[string]endpoint) {
	for _, node := range Nodes {
		if !c.shown[node].IsZero() {
			continue
		}
		e := got[node]
		for series := range e.series {
			if series.Namespace == CanaryNamespace && series.Name == CanaryName(node) {
				c.shown[node] = now
			}
		}
		switch {
		case !c.shown[node].IsZero() || !e.synced:
			delete(c.staleSince, node)
		case c.staleSince[node].IsZero():
			c.staleSince[node] = now
		default:
			c.stale[node] = max(c.stale[node], now.Sub(c.staleSince[node]))
		}
	}
}
