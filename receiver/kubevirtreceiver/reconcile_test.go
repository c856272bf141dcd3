package kubevirtreceiver

// The decision table of reconcile, row by row, with a fake reader and a map for the watch's
// cache: every outcome in milliseconds. The same rows run against real libvirt and a
// real kube-apiserver in lifecycle_test.go, launcher_test.go and outage_test.go.

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/receiver/receivertest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/detect"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/faultlog"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/hypervisor"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/inventory"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/metadata"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/vmi"
)

// fakeReader answers every Read with res and err, counts the calls and records the
// keys it is told to forget.
type fakeReader struct {
	res       detect.Result
	err       error
	calls     int
	forgotten []string
}

func (f *fakeReader) Read(context.Context, *vmi.VMI) (detect.Result, error) {
	f.calls++
	return f.res, f.err
}

func (f *fakeReader) Forget(key string) { f.forgotten = append(f.forgotten, key) }

func (f *fakeReader) Run(context.Context) {}
func (f *fakeReader) Close()              {}

// fakeVMIs stands for the watch's cache.
type fakeVMIs map[string]*vmi.VMI

func (f fakeVMIs) Get(key string) (*vmi.VMI, bool) {
	v, ok := f[key]
	return v, ok
}

const syncKey = "default/my-vm"

// running is default/my-vm Running on nodeA with its launcher pod.
func running(pod string) *vmi.VMI {
	return &vmi.VMI{Namespace: "default", Name: "my-vm", Phase: vmi.PhaseRunning, NodeName: nodeA,
		Pods: []string{pod}, RuntimeUser: 107}
}

// syncReceiver is a receiver with just what reconcile uses: the fake reader, the fake
// cache, and logs kept in the returned record.
func syncReceiver(reader detect.Reader, vmis fakeVMIs) (*kubevirtReceiver, *observer.ObservedLogs) {
	core, logs := observer.New(zapcore.DebugLevel)
	cfg := createDefaultConfig().(*Config)
	cfg.NodeName = nodeA
	r := newReceiver(receivertest.NewNopSettings(metadata.Type), cfg, nil)
	r.logger = zap.New(core)
	r.libvirtFaults = faultlog.New(r.logger, faultInterval)
	r.reader, r.vmis = reader, vmis
	return r, logs
}

func allFailures(r *kubevirtReceiver) map[string]int64 {
	r.stats.mu.Lock()
	defer r.stats.mu.Unlock()
	out := map[string]int64{}
	for reason, n := range r.stats.failures {
		out[reason.String()] = n
	}
	return out
}

var errLibvirtDown = fmt.Errorf("connecting to libvirt at qemu:///system: %w", errors.New("connection refused"))

func TestReconcileDecisionTable(t *testing.T) {
	pod1 := []string{"pod-1"}
	tests := []struct {
		name   string
		vmi    *vmi.VMI         // in the cache; nil if not
		before inventory.Record // the record before; zero if none
		res    detect.Result
		err    error

		want      inventory.Record // zero: no record
		again     bool
		failure   string // the reason counted, if any
		logged    string // a message at Info or above, if any
		detection bool   // whether libvirt was asked
	}{{
		name: "type read", vmi: running("pod-1"),
		res:  detect.Result{Detection: hypervisor.Detection{Type: hypervisor.KVM, DomainType: "kvm"}},
		want: inventory.Record{Reported: hypervisor.KVM, Known: hypervisor.KVM, KnownPods: pod1}, detection: true,
	}, {
		name: "type read, not supported", vmi: running("pod-1"),
		res:     detect.Result{Detection: hypervisor.Detection{Type: hypervisor.Unknown, DomainType: "test"}},
		want:    inventory.Record{Reported: hypervisor.Unknown, Known: hypervisor.Unknown, KnownPods: pod1},
		failure: "unsupported_type", logged: "Unsupported domain type; reporting unknown", detection: true,
	}, {
		name: "XML unreadable", vmi: running("pod-1"),
		before:  inventory.Record{Reported: hypervisor.KVM, Known: hypervisor.KVM, KnownPods: pod1},
		err:     fmt.Errorf("%w from /pods/x.xml: EOF", detect.ErrInvalidXML),
		want:    inventory.Record{Reported: hypervisor.Unknown, Known: hypervisor.KVM, KnownPods: pod1},
		failure: "invalid_xml", logged: "Failed to parse domain XML; reporting unknown", detection: true,
	}, {
		name: "domain missing", vmi: running("pod-1"),
		err:  fmt.Errorf("%w: default_my-vm", detect.ErrNotFound),
		want: inventory.Record{}, again: true, failure: "domain_missing", detection: true,
	}, {
		name: "domain gone after it had a type", vmi: running("pod-1"),
		before: inventory.Record{Reported: hypervisor.KVM, Known: hypervisor.KVM, KnownPods: pod1},
		err:    fmt.Errorf("%w: default_my-vm", detect.ErrNotFound),
		want:   inventory.Record{Known: hypervisor.KVM, KnownPods: pod1}, again: true, failure: "domain_missing", detection: true,
	}, {
		name: "libvirt down, type known for this launcher", vmi: running("pod-1"),
		before: inventory.Record{Reported: hypervisor.KVM, Known: hypervisor.KVM, KnownPods: pod1},
		err:    errLibvirtDown,
		want:   inventory.Record{Reported: hypervisor.KVM, Known: hypervisor.KVM, KnownPods: pod1}, again: true,
		failure: "libvirt_unreachable", logged: "Failed to detect hypervisor; keeping the type known for this launcher", detection: true,
	}, {
		name: "libvirt down, type known for another launcher", vmi: running("pod-2"),
		before: inventory.Record{Reported: hypervisor.KVM, Known: hypervisor.KVM, KnownPods: pod1},
		err:    errLibvirtDown,
		want:   inventory.Record{Reported: hypervisor.Unknown, Known: hypervisor.KVM, KnownPods: pod1}, again: true,
		failure: "libvirt_unreachable", logged: "Failed to detect hypervisor; reporting unknown", detection: true,
	}, {
		name: "libvirt down, no type known", vmi: running("pod-1"),
		err:  errLibvirtDown,
		want: inventory.Record{Reported: hypervisor.Unknown}, again: true,
		failure: "libvirt_unreachable", logged: "Failed to detect hypervisor; reporting unknown", detection: true,
	}, {
		name: "libvirt down, only an unsupported type known", vmi: running("pod-1"),
		before: inventory.Record{Reported: hypervisor.Unknown, Known: hypervisor.Unknown, KnownPods: pod1},
		err:    errLibvirtDown,
		want:   inventory.Record{Reported: hypervisor.Unknown, Known: hypervisor.Unknown, KnownPods: pod1}, again: true,
		failure: "libvirt_unreachable", logged: "Failed to detect hypervisor; reporting unknown", detection: true,
	}, {
		name: "VMI stopped", vmi: func() *vmi.VMI { v := running("pod-1"); v.Phase = "Succeeded"; return v }(),
		before: inventory.Record{Reported: hypervisor.KVM, Known: hypervisor.KVM, KnownPods: pod1},
	}, {
		name: "VMI moved to another node", vmi: func() *vmi.VMI { v := running("pod-1"); v.NodeName = nodeB; return v }(),
		before: inventory.Record{Reported: hypervisor.KVM, Known: hypervisor.KVM, KnownPods: pod1},
	}, {
		name: "VMI Running without a node", vmi: func() *vmi.VMI { v := running("pod-1"); v.NodeName = ""; return v }(),
	}, {
		name:   "VMI deleted",
		before: inventory.Record{Reported: hypervisor.KVM, Known: hypervisor.KVM, KnownPods: pod1},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vmis := fakeVMIs{}
			if tt.vmi != nil {
				vmis[syncKey] = tt.vmi
			}
			reader := &fakeReader{res: tt.res, err: tt.err}
			r, logs := syncReceiver(reader, vmis)
			if tt.before.Known != "" || tt.before.Reported != "" {
				r.inventory.Put(syncKey, tt.before)
				r.inventory.Changes()
			}

			again := r.reconcile(context.Background(), syncKey)

			assert.Equal(t, tt.again, again, "reconcile again")
			got, ok := r.inventory.Get(syncKey)
			assert.Equal(t, tt.detection, ok, "record kept")
			assert.Equal(t, tt.want, got)
			assert.Equal(t, tt.detection, reader.calls == 1, "libvirt asked")
			// What the reader keeps for the VMI goes with its record, and only then.
			if tt.detection {
				assert.Empty(t, reader.forgotten, "reader told to forget a VMI still reported")
			} else {
				assert.Equal(t, []string{syncKey}, reader.forgotten, "reader not told to forget the VMI")
			}

			wantFailures := map[string]int64{}
			if tt.failure != "" {
				wantFailures[tt.failure] = 1
			}
			assert.Equal(t, wantFailures, allFailures(r))
			var infoOrAbove []string
			for _, e := range logs.FilterLevelExact(zapcore.InfoLevel).All() {
				infoOrAbove = append(infoOrAbove, e.Message)
			}
			for _, e := range logs.FilterLevelExact(zapcore.WarnLevel).All() {
				infoOrAbove = append(infoOrAbove, e.Message)
			}
			if tt.logged == "" {
				assert.Empty(t, infoOrAbove)
			} else {
				assert.Equal(t, []string{tt.logged}, infoOrAbove)
			}

			// What the next batch says about the VMI.
			live, retract := r.inventory.Changes()
			var wantLive, wantRetract []inventory.Series
			if tt.want.Reported != "" && tt.want.Reported != tt.before.Reported {
				wantLive = []inventory.Series{{Key: syncKey, Type: tt.want.Reported}}
			}
			if tt.before.Reported != "" && tt.want.Reported != tt.before.Reported {
				wantRetract = []inventory.Series{{Key: syncKey, Type: tt.before.Reported}}
			}
			assert.ElementsMatch(t, wantLive, live, "new series")
			assert.ElementsMatch(t, wantRetract, retract, "retractions")
		})
	}
}

// TestSyncLogsALibvirtOutageOnceAndItsEnd: many VMIs and retries while libvirt is
// down make one warning; the first VMI libvirt answers for again (with a type, or
// with no such domain) ends the outage in the log, once every failing VMI has.
func TestReconcileLogsALibvirtOutageOnceAndItsEnd(t *testing.T) {
	vmis := fakeVMIs{}
	for _, name := range []string{"a", "b", "c"} {
		v := running("pod-" + name)
		v.Name = name
		vmis[v.Key()] = v
	}
	reader := &fakeReader{err: errLibvirtDown}
	r, logs := syncReceiver(reader, vmis)
	for range 3 {
		for key := range maps.Keys(vmis) {
			require.True(t, r.reconcile(context.Background(), key))
		}
	}
	require.Equal(t, 1, logs.FilterMessage("Failed to detect hypervisor; reporting unknown").Len())
	require.Equal(t, int64(9), allFailures(r)["libvirt_unreachable"])

	reader.err, reader.res = nil, detect.Result{Detection: hypervisor.Detection{Type: hypervisor.QEMUTCG, DomainType: "qemu"}}
	require.False(t, r.reconcile(context.Background(), "default/a"))
	reader.err = fmt.Errorf("%w: default_b", detect.ErrNotFound)
	require.True(t, r.reconcile(context.Background(), "default/b"))
	require.Zero(t, logs.FilterMessage(libvirtRecovered).Len(), "recovered while default/c still fails")
	delete(vmis, "default/c") // a VMI that goes no longer counts as failing
	require.False(t, r.reconcile(context.Background(), "default/c"))
	require.Equal(t, 1, logs.FilterMessage(libvirtRecovered).Len())
}
