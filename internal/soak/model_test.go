package soak

import (
	"strings"
	"testing"
)

func healthy(node, typ string) *Launcher {
	return &Launcher{PodUID: "uid-" + node, Node: node, DomainType: typ, Guest: true, Daemon: true, Socket: true}
}

func running(name, node string, ls ...*Launcher) *VMI {
	return &VMI{Namespace: RealNamespace, Name: name, Phase: PhaseRunning, Node: node, Launchers: ls}
}

func expect(t *testing.T, w *World, node string) map[Series]bool {
	t.Helper()
	got, err := w.Expected(node)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func series(name, node, typ string) Series {
	return Series{Namespace: RealNamespace, Name: name, Node: node, Type: typ}
}

func TestExpectedFollowsTheLauncher(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(l *Launcher)
		want   string // "" for no series
	}{
		{"guest running", func(*Launcher) {}, "kvm"},
		// The status file stays while libvirtd is down or the socket is gone.
		{"libvirtd down", func(l *Launcher) { l.Daemon = false }, "kvm"},
		{"socket removed", func(l *Launcher) { l.Socket = false }, "kvm"},
		{"suspended", func(l *Launcher) { l.Suspended = true }, "kvm"},
		// No status file: libvirt is asked.
		{"domain not started, libvirt answers", func(l *Launcher) { l.Guest = false }, ""},
		{"domain not started, no socket", func(l *Launcher) { l.Guest, l.Socket = false, false }, ""},
		{"domain not started, libvirtd down", func(l *Launcher) { l.Guest, l.Daemon = false, false }, "unknown"},
		{"domain not started, libvirtd down, no socket", func(l *Launcher) { l.Guest, l.Daemon, l.Socket = false, false, false }, ""},
		{"pod gone", func(l *Launcher) { l.Gone, l.Guest, l.Daemon, l.Socket = true, false, false, false }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := healthy(NodeA, "kvm")
			tc.change(l)
			w := NewWorld()
			v := running("vm-0", NodeA, l)
			w.VMIs[v.Key()] = v
			want := map[Series]bool{}
			if tc.want != "" {
				want[series("vm-0", NodeA, tc.want)] = true
			}
			if d := Diff(want, expect(t, w, NodeA)); d != "" {
				t.Error(d)
			}
			if got := expect(t, w, NodeB); len(got) > 0 {
				t.Errorf("node B: %v", got)
			}
		})
	}
}

func TestExpectedOnlyForRunningVMIsOnTheNode(t *testing.T) {
	w := NewWorld()
	for _, v := range []*VMI{
		{Namespace: RealNamespace, Name: "pending", Phase: PhasePending},
		{Namespace: RealNamespace, Name: "scheduled", Phase: PhaseScheduled, Node: NodeA, Launchers: []*Launcher{healthy(NodeA, "kvm")}},
		{Namespace: RealNamespace, Name: "succeeded", Phase: PhaseSucceeded, Node: NodeA, Launchers: []*Launcher{healthy(NodeA, "kvm")}},
		{Namespace: RealNamespace, Name: "paused", Phase: PhaseRunning, Paused: true, Node: NodeA, Launchers: []*Launcher{healthy(NodeA, "qemu")}},
		// Running on A with its launcher on B only: nothing for A to read.
		{Namespace: RealNamespace, Name: "elsewhere", Phase: PhaseRunning, Node: NodeA, Launchers: []*Launcher{healthy(NodeB, "kvm")}},
	} {
		w.VMIs[v.Key()] = v
	}
	want := map[Series]bool{series("paused", NodeA, "qemu-tcg"): true}
	if d := Diff(want, expect(t, w, NodeA)); d != "" {
		t.Error(d)
	}
}

func TestExpectedDuringMigration(t *testing.T) {
	src, tgt := healthy(NodeA, "qemu"), healthy(NodeB, "qemu")
	tgt.PodUID = "uid-target"
	v := running("vm-0", NodeA, src, tgt)
	v.Migration = Migrating
	w := NewWorld()
	w.VMIs[v.Key()] = v
	if d := Diff(map[Series]bool{series("vm-0", NodeA, "qemu-tcg"): true}, expect(t, w, NodeA)); d != "" {
		t.Errorf("migrating, node A:\n%s", d)
	}
	if got := expect(t, w, NodeB); len(got) > 0 {
		t.Errorf("migrating, node B: %v", got)
	}
	v.Node, v.Migration = NodeB, Migrated
	if got := expect(t, w, NodeA); len(got) > 0 {
		t.Errorf("migrated, node A: %v", got)
	}
	if d := Diff(map[Series]bool{series("vm-0", NodeB, "qemu-tcg"): true}, expect(t, w, NodeB)); d != "" {
		t.Errorf("migrated, node B:\n%s", d)
	}
}

// A launcher that lost its guest while its VMI ran, with libvirtd down, leaves the series
// to what the collector saw: the oracle refuses rather than guess.
func TestExpectedRefusesWhatDependsOnTiming(t *testing.T) {
	l := healthy(NodeA, "kvm")
	v := running("vm-0", NodeA, l)
	w := NewWorld()
	w.VMIs[v.Key()] = v
	w.Observe()
	l.Guest, l.Daemon = false, false
	if _, err := w.Expected(NodeA); err == nil {
		t.Fatal("no error")
	}
}

func TestExpectedOnTheVolumeNode(t *testing.T) {
	w := NewWorld()
	for i := range 8 {
		v := &VMI{Namespace: VolumeNamespace, Name: VolumeName(i), Volume: true, Phase: PhaseRunning, Node: NodeVolume}
		w.VMIs[v.Key()] = v
	}
	// A real VMI's domain is not the test driver's.
	r := running("vm-0", NodeVolume)
	w.VMIs[r.Key()] = r
	c := &VMI{Namespace: CanaryNamespace, Name: CanaryName(NodeVolume), Canary: true, Phase: PhaseRunning, Node: NodeVolume}
	w.VMIs[c.Key()] = c
	want := map[Series]bool{{Namespace: CanaryNamespace, Name: "canary-volume", Node: NodeVolume, Type: "kvm"}: true}
	for i, typ := range []string{"kvm", "kvm", "qemu-tcg", "qemu-tcg", "mshv", "unknown"} { // 6: shut off, 7: no domain
		want[Series{Namespace: VolumeNamespace, Name: VolumeName(i), Node: NodeVolume, Type: typ}] = true
	}
	if d := Diff(want, expect(t, w, NodeVolume)); d != "" {
		t.Error(d)
	}
}

func TestTestDriverNodeHoldsTheVolumeDomains(t *testing.T) {
	x := TestDriverNode()
	for _, want := range []string{
		`<domain type="kvm" xmlns:test='http://libvirt.org/schemas/domain/test/1.0'><name>soak-volume_v-000</name>`,
		`<domain type="test" xmlns:test='http://libvirt.org/schemas/domain/test/1.0'><name>soak-volume_v-005</name>`,
		`<name>soak-volume_v-006</name><memory>65536</memory><os><type arch='x86_64'>hvm</type></os><test:runstate>5</test:runstate>`,
	} {
		if !strings.Contains(x, want) {
			t.Errorf("node file lacks %s", want)
		}
	}
	if strings.Contains(x, "v-007<") || strings.Count(x, "<domain ") != 1+VolumeNames*7/8 {
		t.Errorf("want every eighth name without a domain:\n%s", x)
	}
}

func TestParseEndpoint(t *testing.T) {
	e, err := parseEndpoint(strings.NewReader(`# HELP kubevirt_vmi_hypervisor_info Hypervisor.
# TYPE kubevirt_vmi_hypervisor_info gauge
kubevirt_vmi_hypervisor_info{hypervisor_type="kvm",name="vm-0",namespace="soak",node="soak-node-a"} 1
kubevirt_vmi_hypervisor_info{hypervisor_type="qemu-tcg",name="vm-1",namespace="soak",node="soak-node-a",extra="x"} 1
kubevirt_vmi_hypervisor_info{hypervisor_type="mshv",name="vm-2",namespace="soak",node="soak-node-a"} 2
# TYPE kubevirt_vmi_hypervisor_watch_synced gauge
kubevirt_vmi_hypervisor_watch_synced 1
`))
	if err != nil {
		t.Fatal(err)
	}
	want := map[Series]bool{
		{Namespace: "soak", Name: "vm-0", Node: NodeA, Type: "kvm"}:                true,
		{Namespace: "soak", Name: "vm-1", Node: NodeA, Type: "qemu-tcg [extra=x]"}: true,
		{Namespace: "soak", Name: "vm-2", Node: NodeA, Type: "mshv [value 2]"}:     true,
	}
	if d := Diff(want, e.series); d != "" || !e.synced {
		t.Errorf("synced %v, diff:\n%s", e.synced, d)
	}
}

func TestParseRuntimeTrace(t *testing.T) {
	log := `SCHED 0ms: gomaxprocs=2 idleprocs=1 threads=2
  P0: status=1 schedtick=0
  G1: status=2() m=0 lockedm=nil
gc 1 @0.002s 12%: 0.91+0.99+0.010 ms clock, 1.8+0.98/0.042/0+0.020 ms cpu, 4->4->3 MB, 4 MB goal, 0 MB stacks, 0 MB globals, 2 P
SCHED 5000ms: gomaxprocs=2 idleprocs=2 threads=4
  M0: p=nil curg=nil
  G1: status=4(sleep) m=nil lockedm=nil
  G2: status=4100(chan receive) m=nil lockedm=nil
  G3: status=6() m=nil lockedm=nil
  G4: status=1() m=nil lockedm=nil
gc 2 @6.0s 1%: 0.1+0.1+0.01 ms clock, 0.2+0.1/0.1/0+0.01 ms cpu, 9->9->7 MB, 10 MB goal, 0 MB stacks, 0 MB globals, 2 P (forced)
SCHED 10000ms: gomaxprocs=2
  G1: status=4(sleep) m=nil lockedm=nil
`
	traces, heaps, err := parseRuntimeTrace(strings.NewReader(log))
	if err != nil {
		t.Fatal(err)
	}
	// The last trace may be incomplete and is left out; dead goroutines do not count.
	if len(traces) != 2 || traces[0].Goroutines != 1 || traces[1].Goroutines != 3 {
		t.Fatalf("traces %+v", traces)
	}
	if g, ok := goroutinesAfter(traces, traces[0].Offset+1); !ok || g != 3 {
		t.Errorf("goroutinesAfter = %d, %v", g, ok)
	}
	if _, ok := goroutinesAfter(traces, traces[1].Offset+1); ok {
		t.Error("a trace after the last complete one")
	}
	if len(heaps) != 2 || heapBefore(heaps, traces[1].Offset) != 3 || heapBefore(heaps, int64(len(log))) != 7 || heapBefore(heaps, 0) != -1 {
		t.Errorf("heaps %+v", heaps)
	}
	if maxGoroutines(traces) != 3 {
		t.Errorf("max %d", maxGoroutines(traces))
	}
}
