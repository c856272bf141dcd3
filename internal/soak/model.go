package soak

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// The soak's nodes. The first two run launcher pods (libvirt.source: launcher); the
// volume node's VMIs are domains of libvirt's test driver (libvirt.source: uri).
const (
	NodeA      = "soak-node-a"
	NodeB      = "soak-node-b"
	NodeVolume = "soak-node-volume"
)

// LauncherNodes are the nodes whose VMIs have launcher pods, between which VMIs migrate.
var LauncherNodes = []string{NodeA, NodeB}

// Nodes are every node with a collector.
var Nodes = []string{NodeA, NodeB, NodeVolume}

// Namespaces of the kinds of VMI: with launcher pods, of the test driver, and the
// canaries (one a node, see soak.checkFollowing).
const (
	RealNamespace   = "soak"
	VolumeNamespace = "soak-volume"
	CanaryNamespace = "soak-canary"
)

// CanaryName is the name of node's canary VMI.
func CanaryName(node string) string { return "canary-" + strings.TrimPrefix(node, "soak-node-") }

// VMI phases the soak uses, as KubeVirt sets them.
const (
	PhasePending   = "Pending"
	PhaseScheduled = "Scheduled"
	PhaseRunning   = "Running"
	PhaseSucceeded = "Succeeded"
)

// Migration says where a VMI is in a live migration.
type Migration int

const (
	// NotMigrating: the VMI has one launcher pod, on its node.
	NotMigrating Migration = iota
	// Migrating: a target launcher runs on the other node; status.nodeName is still the
	// source's and activePods lists both.
	Migrating
	// Migrated: status.nodeName is the target's; the source launcher is still listed in
	// activePods until it is cleaned up.
	Migrated
)

// VMI is what the soak made of one VirtualMachineInstance that exists in the API server.
type VMI struct {
	Namespace, Name string
	// Volume VMIs have no launcher: their domains are the volume node's test driver's.
	Volume bool
	// Canary VMIs are left alone by the generator; the soak flips them itself.
	Canary bool
	Phase  string
	// Node is status.nodeName and the kubevirt.io/nodeName label ("" before scheduling).
	Node string
	// Paused is the Paused condition.
	Paused bool
	// Launchers are the VMI's launcher pods: the keys of status.activePods.
	Launchers []*Launcher
	Migration Migration
}

// Key is namespace/name.
func (v *VMI) Key() string { return v.Namespace + "/" + v.Name }

// Domain is the libvirt domain name, <namespace>_<name>.
func (v *VMI) Domain() string { return v.Namespace + "_" + v.Name }

// LauncherOn returns the VMI's launcher on node, nil if none.
func (v *VMI) LauncherOn(node string) *Launcher {
	for _, l := range v.Launchers {
		if l.Node == node {
			return l
		}
	}
	return nil
}

// ActivePods is status.activePods: launcher pod UID -> node.
func (v *VMI) ActivePods() map[string]string {
	if len(v.Launchers) == 0 {
		return nil
	}
	pods := make(map[string]string, len(v.Launchers))
	for _, l := range v.Launchers {
		pods[l.PodUID] = l.Node
	}
	return pods
}

// Launcher is one launcher pod as the soak left it: its own libvirtd, its socket in the
// pod's libvirt-runtime volume and its guest.
type Launcher struct {
	PodUID string
	Node   string
	// DomainType is the guest's libvirt domain type, "kvm" or "qemu".
	DomainType string
	// RuntimeUser is the uid its libvirtd runs as (status.runtimeUser).
	RuntimeUser int64
	// Guest says the guest runs, so libvirt's status file for it exists. libvirtd
	// writes it before a start returns and removes it when the guest stops; while
	// libvirtd is down it stays, and so does the guest.
	Guest bool
	// Suspended says the guest is paused in libvirt.
	Suspended bool
	// Daemon says libvirtd runs and answers on its socket.
	Daemon bool
	// Socket says the launcher socket (virtqemud-sock) the collector dials exists.
	Socket bool
	// Observed says the guest ran while its VMI was Running on this launcher's node:
	// from then on the collector may know its type (see World.Expected).
	Observed bool
	// Gone says the pod was deleted (its directory too); the VMI may still list it.
	Gone bool
}

// Healthy says libvirtd runs and its socket is in place.
func (l *Launcher) Healthy() bool { return l.Daemon && l.Socket }

// Series is one kubevirt_vmi_hypervisor_info series.
type Series struct {
	Namespace, Name, Node, Type string
}

func (s Series) String() string {
	return fmt.Sprintf("{hypervisor_type=%q,name=%q,namespace=%q,node=%q}", s.Type, s.Name, s.Namespace, s.Node)
}

// World is the soak's model: every VMI in the API server, with its launchers.
type World struct {
	VMIs map[string]*VMI
}

// NewWorld returns a world without VMIs.
func NewWorld() *World { return &World{VMIs: map[string]*VMI{}} }

// Sorted returns the VMIs sorted by key, the only order the soak looks at them in, so
// that a seed replays.
func (w *World) Sorted() []*VMI {
	keys := slices.Sorted(maps.Keys(w.VMIs))
	out := make([]*VMI, len(keys))
	for i, k := range keys {
		out[i] = w.VMIs[k]
	}
	return out
}

// Launchers returns every launcher pod that exists but the canaries', in VMI key order.
func (w *World) Launchers() []*Launcher {
	var out []*Launcher
	for _, v := range w.Sorted() {
		if v.Canary {
			continue
		}
		for _, l := range v.Launchers {
			if !l.Gone {
				out = append(out, l)
			}
		}
	}
	return out
}

// Observe marks the launchers whose guest runs while their VMI is Running on their node;
// the soak calls it after every change.
func (w *World) Observe() {
	for _, v := range w.VMIs {
		if v.Phase != PhaseRunning {
			continue
		}
		if l := v.LauncherOn(v.Node); l != nil && l.Guest {
			l.Observed = true
		}
	}
}

// Expected returns the series the collector of node must serve, as the README says:
//
//   - A VMI has a series on node when its phase is Running and status.nodeName is node
//     (the collector watches the kubevirt.io/nodeName label, which the soak keeps
//     equal), and its domain exists; a Running VMI whose domain does not exist yet gets
//     none. Pausing keeps the phase Running, and so the series.
//   - On a launcher node the domain is read from the VMI's launcher pods on that node
//     (status.activePods): libvirt's status file while the guest runs, else the
//     launcher's libvirt over its socket. No socket means the pod is starting or gone
//     (no domain); a libvirt that answers without the running domain means no domain
//     either; a socket whose libvirt does not answer means libvirt cannot be reached,
//     and the VMI is reported "unknown" (a type already known for the same launcher
//     is kept).
//   - On the volume node every domain comes from the test driver's node file.
//   - The type is libvirt's domain type: kvm is kvm, qemu is qemu-tcg, hyperv is mshv,
//     anything else is unknown.
//
// It fails when the world is in a state whose series depends on what the collector
// happened to see between two quiet points, which the generator never produces.
func (w *World) Expected(node string) (map[Series]bool, error) {
	out := map[Series]bool{}
	for _, v := range w.Sorted() {
		if v.Phase != PhaseRunning || v.Node != node {
			continue
		}
		var typ string
		var ok bool
		var err error
		if node == NodeVolume {
			typ, ok = testDriverSeriesType(v.Domain())
		} else {
			typ, ok, err = launcherSeriesType(v, node)
		}
		if err != nil {
			return nil, err
		}
		if ok {
			out[Series{Namespace: v.Namespace, Name: v.Name, Node: node, Type: typ}] = true
		}
	}
	return out, nil
}

// launcherSeriesType is the type a Running VMI's launchers on node give it, and whether
// it has a series.
func launcherSeriesType(v *VMI, node string) (string, bool, error) {
	unreachable := false
	for _, l := range v.Launchers {
		if l.Node != node {
			continue
		}
		switch {
		case l.Guest:
			return hypervisorType(l.DomainType), true, nil
		case !l.Socket, l.Daemon:
			// No domain: nothing to report.
		case l.Observed:
			// The collector may or may not have read the type before the guest went
			// away: "a type already known for the same launcher is kept".
			return "", false, fmt.Errorf("oracle: VMI %s: launcher %s lost its guest while its VMI ran and its libvirtd is down; "+
				"whether the collector knew the type depends on timing", v.Key(), l.PodUID)
		default:
			unreachable = true
		}
	}
	if unreachable {
		return "unknown", true, nil
	}
	return "", false, nil
}

// hypervisorType maps a libvirt domain type to hypervisor_type, as the README's table
// does.
func hypervisorType(domainType string) string {
	switch domainType {
	case "kvm":
		return "kvm"
	case "qemu":
		return "qemu-tcg"
	case "hyperv":
		return "mshv"
	default:
		return "unknown"
	}
}

// VolumeNames is how many volume VMI names there are: v-000 to v-<VolumeNames-1>.
const VolumeNames = 80

// VolumeName is the name of the i-th volume VMI.
func VolumeName(i int) string { return fmt.Sprintf("v-%03d", i) }

// volumeDomain says what the test driver's node file holds for the i-th volume VMI: its
// domain type, and whether it runs. One in eight names has no domain at all (defined
// reports false), one in eight is defined but shut off, one in eight has a type the
// receiver does not know ("test").
func volumeDomain(i int) (domainType string, running, defined bool) {
	switch i % 8 {
	case 0, 1:
		return "kvm", true, true
	case 2, 3:
		return "qemu", true, true
	case 4:
		return "hyperv", true, true
	case 5:
		return "test", true, true
	case 6:
		return "kvm", false, true
	default:
		return "", false, false
	}
}

// canaryDomainType is the type of the volume node's canary domain.
const canaryDomainType = "kvm"

// testDriverSeriesType is the type of the test driver's domain, and whether the test
// driver has it running.
func testDriverSeriesType(domain string) (string, bool) {
	ns, name, _ := strings.Cut(domain, "_")
	if ns == CanaryNamespace && name == CanaryName(NodeVolume) {
		return hypervisorType(canaryDomainType), true
	}
	if ns != VolumeNamespace {
		return "", false
	}
	for i := range VolumeNames {
		if VolumeName(i) != name {
			continue
		}
		typ, running, _ := volumeDomain(i)
		if !running {
			return "", false
		}
		return hypervisorType(typ), true
	}
	return "", false
}

// TestDriverNode is the test driver's node file for the volume node: the domains of
// volumeDomain and the canary's.
func TestDriverNode() string {
	var b strings.Builder
	b.WriteString("<node>\n")
	fmt.Fprintf(&b, "  <domain type=%q><name>%s_%s</name><memory>65536</memory><os><type arch='x86_64'>hvm</type></os></domain>\n",
		canaryDomainType, CanaryNamespace, CanaryName(NodeVolume))
	for i := range VolumeNames {
		typ, running, defined := volumeDomain(i)
		if !defined {
			continue
		}
		fmt.Fprintf(&b, "  <domain type=%q xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>"+
			"<name>%s_%s</name><memory>65536</memory><os><type arch='x86_64'>hvm</type></os>", typ, VolumeNamespace, VolumeName(i))
		if !running {
			b.WriteString("<test:runstate>5</test:runstate>") // shut off
		}
		b.WriteString("</domain>\n")
	}
	b.WriteString("</node>\n")
	return b.String()
}

// Diff describes how got differs from want, one series a line.
func Diff(want, got map[Series]bool) string {
	var lines []string
	for s := range want {
		if !got[s] {
			lines = append(lines, "missing "+s.String())
		}
	}
	for s := range got {
		if !want[s] {
			lines = append(lines, "extra   "+s.String())
		}
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}
