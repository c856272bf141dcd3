package kubevirtreceiver

// The decision table of sync, row by row, with a fake reader and a map for the watch's
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

// fakeReader answers every Detect with res and err, and counts the calls.
type fakeReader struct {
	res   detect.Result
	err   error
	calls int
}

func (f *fakeReader) Detect(_ context.Context, _ *vmi.VMI, conn *detect.LauncherConn) (detect.Result, *detect.LauncherConn, error) {
	f.calls++
	return f.res, conn, f.err
}

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
		ActivePods: map[string]string{pod: nodeA}, RuntimeUser: 107}
}

// syncReceiver is a receiver with just what sync uses: the fake reader, the fake
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

func TestSyncDecisionTable(t *testing.T) {
	pod1 := inventory.LaunchersOf([]string{"pod-1"})
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
		want: inventory.Record{Series: hypervisor.KVM, Known: hypervisor.KVM, Launchers: pod1}, detection: true,
	}, {
		name: "type read, not supported", vmi: running("pod-1"),
		res:     detect.Result{Detection: hypervisor.Detection{Type: hypervisor.Unknown, DomainType: "test"}},
		want:    inventory.Record{Series: hypervisor.Unknown, Known: hypervisor.Unknown, Launchers: pod1},
		failure: "unsupported_type", logged: "Unsupported domain type; reporting unknown", detection: true,
	}, {
		name: "XML unreadable", vmi: running("pod-1"),
		before:  inventory.Record{Series: hypervisor.KVM, Known: hypervisor.KVM, Launchers: pod1},
		err:     fmt.Errorf("%w from /pods/x.xml: EOF", detect.ErrInvalidXML),
		want:    inventory.Record{Series: hypervisor.Unknown, Known: hypervisor.KVM, Launchers: pod1},
		failure: "invalid_xml", logged: "Failed to parse domain XML; reporting unknown", detection: true,
	}, {
		name: "domain missing", vmi: running("pod-1"),
		err:  fmt.Errorf("%w: default_my-vm", detect.ErrNotFound),
		want: inventory.Record{}, again: true, failure: "domain_missing", detection: true,
	}, {
		name: "domain gone after it had a type", vmi: running("pod-1"),
		before: inventory.Record{Series: hypervisor.KVM, Known: hypervisor.KVM, Launchers: pod1},
		err:    fmt.Errorf("%w: default_my-vm", detect.ErrNotFound),
		want:   inventory.Record{Known: hypervisor.KVM, Launchers: pod1}, again: true, failure: "domain_missing", detection: true,
	}, {
		name: "libvirt down, type known for this launcher", vmi: running("pod-1"),
		before: inventory.Record{Series: hypervisor.KVM, Known: hypervisor.KVM, Launchers: pod1},
		err:    errLibvirtDown,
		want:   inventory.Record{Series: hypervisor.KVM, Known: hypervisor.KVM, Launchers: pod1}, again: true,
		failure: "libvirt_unreachable", logged: "Failed to detect hypervisor; keeping the type known for this launcher", detection: true,
	}, {
		name: "libvirt down, type known for another launcher", vmi: running("pod-2"),
		before: inventory.Record{Series: hypervisor.KVM, Known: hypervisor.KVM, Launchers: pod1},
		err:    errLibvirtDown,
		want:   inventory.Record{Series: hypervisor.Unknown, Known: hypervisor.KVM, Launchers: pod1}, again: true,
		failure: "libvirt_unreachable", logged: "Failed to detect hypervisor; reporting unknown", detection: true,
	}, {
		name: "libvirt down, no type known", vmi: running("pod-1"),
		err:  errLibvirtDown,
		want: inventory.Record{Series: hypervisor.Unknown}, again: true,
		failure: "libvirt_unreachable", logged: "Failed to detect hypervisor; reporting unknown", detection: true,
	}, {
		name: "libvirt down, only an unsupported type known", vmi: running("pod-1"),
		before: inventory.Record{Series: hypervisor.Unknown, Known: hypervisor.Unknown, Launchers: pod1},
		err:    errLibvirtDown,
		want:   inventory.Record{Series: hypervisor.Unknown, Known: hypervisor.Unknown, Launchers: pod1}, again: true,
		failure: "libvirt_unreachable", logged: "Failed to detect hypervisor; reporting unknown", detection: true,
	}, {
		name: "VMI stopped", vmi: func() *vmi.VMI { v := running("pod-1"); v.Phase = "Succeeded"; return v }(),
		before: inventory.Record{Series: hypervisor.KVM, Known: hypervisor.KVM, Launchers: pod1},
	}, {
		name: "VMI moved to another node", vmi: func() *vmi.VMI { v := running("pod-1"); v.NodeName = nodeB; return v }(),
		before: inventory.Record{Series: hypervisor.KVM, Known: hypervisor.KVM, Launchers: pod1},
	}, {
		name: "VMI Running without a node", vmi: func() *vmi.VMI { v := running("pod-1"); v.NodeName = ""; return v }(),
	}, {
		name:   "VMI deleted",
		before: inventory.Record{Series: hypervisor.KVM, Known: hypervisor.KVM, Launchers: pod1},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vmis := fakeVMIs{}
			if tt.vmi != nil {
				vmis[syncKey] = tt.vmi
			}
			reader := &fakeReader{res: tt.res, err: tt.err}
			r, logs := syncReceiver(reader, vmis)
			hadRecord := tt.before != inventory.Record{}
			if hadRecord {
				r.inventory.Put(syncKey, tt.before)
				r.inventory.Changes()
			}

			again := r.sync(context.Background(), syncKey)

			assert.Equal(t, tt.again, again, "sync again")
			got, ok := r.inventory.Get(syncKey)
			wantRecord := tt.want != inventory.Record{} || (tt.detection && tt.want == inventory.Record{})
			assert.Equal(t, wantRecord, ok, "record kept")
			assert.Equal(t, tt.want, got)
			assert.Equal(t, tt.detection, reader.calls == 1, "libvirt asked")

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
			if tt.want.Series != "" && tt.want.Series != tt.before.Series {
				wantLive = []inventory.Series{{Key: syncKey, Type: tt.want.Series}}
			}
			if tt.before.Series != "" && tt.want.Series != tt.before.Series {
				wantRetract = []inventory.Series{{Key: syncKey, Type: tt.before.Series}}
			}
			assert.ElementsMatch(t, wantLive, live, "new series")
			assert.ElementsMatch(t, wantRetract, retract, "retractions")
		})
	}
}

// TestSyncLogsALibvirtOutageOnceAndItsEnd: many VMIs and retries while libvirt is
// down make one warning; the first VMI libvirt answers for again (with a type, or
// with no such domain) ends the outage in the log, once every failing VMI has.
func TestSyncLogsALibvirtOutageOnceAndItsEnd(t *testing.T) {
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
			require.True(t, r.sync(context.Background(), key))
		}
	}
	require.Equal(t, 1, logs.FilterMessage("Failed to detect hypervisor; reporting unknown").Len())
	require.Equal(t, int64(9), allFailures(r)["libvirt_unreachable"])

	reader.err, reader.res = nil, detect.Result{Detection: hypervisor.Detection{Type: hypervisor.QEMUTCG, DomainType: "qemu"}}
	require.False(t, r.sync(context.Background(), "default/a"))
	reader.err = fmt.Errorf("%w: default_b", detect.ErrNotFound)
	require.True(t, r.sync(context.Background(), "default/b"))
	require.Zero(t, logs.FilterMessage(libvirtRecovered).Len(), "recovered while default/c still fails")
	delete(vmis, "default/c") // a VMI that goes no longer counts as failing
	require.False(t, r.sync(context.Background(), "default/c"))
	require.Equal(t, 1, logs.FilterMessage(libvirtRecovered).Len())
}

// TestSyncKeepsTheLauncherConnectionTheReaderHandsBack: the connection Detect returns
// is what the next Detect of the VMI gets.
func TestSyncKeepsTheLauncherConnectionTheReaderHandsBack(t *testing.T) {
	conn := &detect.LauncherConn{}
	reader := &connReader{give: conn}
	r, _ := syncReceiver(reader, fakeVMIs{syncKey: running("pod-1")})
	r.sync(context.Background(), syncKey)
	r.sync(context.Background(), syncKey)
	require.Equal(t, []*detect.LauncherConn{nil, conn}, reader.got)
	rec, _ := r.inventory.Get(syncKey)
	require.Same(t, conn, rec.Conn)
}

// connReader hands out give and records the connection each Detect was given.
type connReader struct {
	fakeReader
	give *detect.LauncherConn
	got  []*detect.LauncherConn
}

func (c *connReader) Detect(_ context.Context, _ *vmi.VMI, conn *detect.LauncherConn) (detect.Result, *detect.LauncherConn, error) {
	c.got = append(c.got, conn)
	return detect.Result{Detection: hypervisor.Detection{Type: hypervisor.KVM}}, c.give, nil
}
