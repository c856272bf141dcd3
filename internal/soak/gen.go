package soak

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Recovery bounds: how long after a burst's last change the collectors may take to show
// it. Every burst gets the largest bound of its changes; a collector that does not match
// the oracle within it is a mismatch. Typical figures are far below (see the report);
// the bounds are what the receiver's design allows, with room for a loaded machine.
const (
	// eventBound: a VMI change through a working watch. The receiver detects and sends
	// it at once; the README promises removal within a second.
	eventBound = 10 * time.Second
	// libvirtBound: a change that the receiver may only see on a retry: a VMI whose
	// domain was missing or whose libvirt was unreachable is retried with backoff up to
	// 30 s (retryMax), and a lost libvirt connection is redialled within 2 s.
	libvirtBound = 45 * time.Second
	// apiBound: after the API server restarted or a watch expired, client-go's reflector
	// lists and watches again with a backoff that ends in [30, 60) s while failures
	// repeat (reset after 2 min without one).
	apiBound = 90 * time.Second
)

// Limits of the soak's world.
const (
	// realNames is how many names real VMIs are created under; names are reused, so
	// that a VMI is often deleted and created again under its old name.
	realNames = 8
	// maxBulk is the most volume VMIs one action changes.
	maxBulk = 8
)

// action is one change the soak makes.
type action struct {
	kind  string
	fault bool
	bound time.Duration
	desc  string
	// n is how many VMIs the action changes (volume actions change several); 0 means 1.
	n  int
	do func(ctx context.Context) error
}

// candidate is an action the generator may pick, with its weight.
type candidate struct {
	kind   string
	fault  bool
	weight float64
	build  func() *action
}

// Action kinds, as the report counts them.
const (
	kCreate          = "create"
	kSchedule        = "schedule"
	kRun             = "run"
	kStartGuest      = "start-guest"
	kPause           = "pause"
	kResume          = "resume"
	kMigrateStart    = "migrate-start"
	kMigrateComplete = "migrate-complete"
	kMigrateCleanup  = "migrate-cleanup"
	kStop            = "stop"
	kDelete          = "delete"
	kVolCreate       = "volume-create"
	kVolRun          = "volume-run"
	kVolPause        = "volume-pause"
	kVolResume       = "volume-resume"
	kVolStop         = "volume-stop"
	kVolDelete       = "volume-delete"

	kKill        = "libvirtd-kill"
	kRestart     = "libvirtd-restart"
	kKillRestart = "libvirtd-kill-restart"
	kSockRemove  = "socket-remove"
	kSockRestore = "socket-restore"
	kAPIRestart  = "apiserver-restart"
	kWatchExpiry = "watch-expiry"
)

// filter says which kinds of candidate are allowed.
type filter func(kind string, fault bool) bool

// anything allows every kind.
func anything(string, bool) bool { return true }

// libvirtOnly allows what does not go through the API server.
func libvirtOnly(kind string, fault bool) bool {
	return (fault && kind != kAPIRestart && kind != kWatchExpiry) || kind == kStartGuest
}

// eventsOnly allows VMI changes only.
func eventsOnly(_ string, fault bool) bool { return !fault }

// next picks an action among those allowed, or nil if none is possible.
func (s *soak) next(allow filter) *action {
	var cands []candidate
	for _, c := range s.candidates() {
		if c.weight > 0 && allow(c.kind, c.fault) {
			if !s.done[c.kind] {
				c.weight *= 10 // every kind early, so that short runs see them all
			}
			cands = append(cands, c)
		}
	}
	if len(cands) == 0 {
		return nil
	}
	var total float64
	for _, c := range cands {
		total += c.weight
	}
	x := s.rng.Float64() * total
	for _, c := range cands {
		if x < c.weight {
			return c.build()
		}
		x -= c.weight
	}
	return cands[len(cands)-1].build()
}

// apply runs a and keeps the books.
func (s *soak) apply(ctx context.Context, a *action) error {
	desc := strings.Repeat("  ", s.depth) + a.desc
	s.burst = append(s.burst, desc)
	s.bound = max(s.bound, a.bound)
	if s.opts.Verbose {
		s.logf("  %s", desc)
	}
	s.depth++
	defer func() { s.depth-- }()
	if err := a.do(ctx); err != nil {
		return fmt.Errorf("%s: %w", a.desc, err)
	}
	s.done[a.kind] = true
	if a.fault {
		s.report.Faults[a.kind]++
	} else {
		s.report.Events[a.kind] += max(a.n, 1)
	}
	return nil
}

// selectVMIs returns the VMIs but the canaries that satisfy ok, in key order.
func (s *soak) selectVMIs(ok func(v *VMI) bool) []*VMI {
	var out []*VMI
	for _, v := range s.world.Sorted() {
		if !v.Canary && ok(v) {
			out = append(out, v)
		}
	}
	return out
}

func (s *soak) pickVMI(vs []*VMI) *VMI { return vs[s.rng.IntN(len(vs))] }

func (s *soak) pickLauncher(ls []*Launcher) *Launcher { return ls[s.rng.IntN(len(ls))] }

// pickSome returns between 1 and maxBulk of vs, in key order.
func (s *soak) pickSome(vs []*VMI) []*VMI {
	k := 1 + s.rng.IntN(min(len(vs), maxBulk))
	idx := s.rng.Perm(len(vs))[:k]
	slices.Sort(idx)
	out := make([]*VMI, k)
	for i, j := range idx {
		out[i] = vs[j]
	}
	return out
}

func (s *soak) chance(percent int) bool { return s.rng.IntN(100) < percent }

func keys(vs []*VMI) string {
	ks := make([]string, len(vs))
	for i, v := range vs {
		ks[i] = v.Key()
	}
	return strings.Join(ks, " ")
}

func otherNode(node string) string {
	if node == NodeA {
		return NodeB
	}
	return NodeA
}

// current is the launcher of a real VMI on its node.
func current(v *VMI) *Launcher { return v.LauncherOn(v.Node) }

// candidates lists every action possible in the world as it is, in a fixed order.
func (s *soak) candidates() []candidate {
	real := func(ok func(v *VMI) bool) []*VMI {
		return s.selectVMIs(func(v *VMI) bool { return !v.Volume && ok(v) })
	}
	volume := func(ok func(v *VMI) bool) []*VMI {
		return s.selectVMIs(func(v *VMI) bool { return v.Volume && ok(v) })
	}
	launchers := len(s.world.Launchers())
	roomForLauncher := launchers < s.opts.MaxLaunchers
	var cs []candidate
	add := func(kind string, fault bool, weight float64, build func() *action) {
		cs = append(cs, candidate{kind: kind, fault: fault, weight: weight, build: build})
	}

	// Real VMIs.
	nReal := len(real(func(*VMI) bool { return true }))
	if free := s.freeRealNames(); len(free) > 0 && nReal < s.opts.MaxRealVMIs {
		w := 2.0
		if nReal < 2 {
			w = 6
		}
		add(kCreate, false, w, func() *action { return s.createReal(free[s.rng.IntN(len(free))]) })
	}
	if vs := real(func(v *VMI) bool { return v.Phase == PhasePending }); len(vs) > 0 && roomForLauncher {
		add(kSchedule, false, 4, func() *action { return s.schedule(s.pickVMI(vs)) })
	}
	if vs := real(func(v *VMI) bool { return v.Phase == PhaseScheduled }); len(vs) > 0 {
		add(kRun, false, 6, func() *action { return s.run(s.pickVMI(vs)) })
	}
	if vs := real(func(v *VMI) bool {
		l := current(v)
		return v.Phase == PhaseRunning && l != nil && !l.Guest && !l.Gone && l.Daemon
	}); len(vs) > 0 {
		add(kStartGuest, false, 6, func() *action { return s.startGuestAction(s.pickVMI(vs)) })
	}
	if vs := real(func(v *VMI) bool {
		l := current(v)
		return v.Phase == PhaseRunning && !v.Paused && v.Migration == NotMigrating && l != nil && l.Guest && l.Daemon
	}); len(vs) > 0 {
		add(kPause, false, 1.5, func() *action { return s.pauseReal(s.pickVMI(vs), true) })
	}
	if vs := real(func(v *VMI) bool {
		l := current(v)
		return v.Paused && l != nil && l.Daemon
	}); len(vs) > 0 {
		add(kResume, false, 2, func() *action { return s.pauseReal(s.pickVMI(vs), false) })
	}
	if vs := real(func(v *VMI) bool {
		l := current(v)
		return v.Phase == PhaseRunning && !v.Paused && v.Migration == NotMigrating && l != nil && l.Guest && l.Daemon
	}); len(vs) > 0 && roomForLauncher {
		add(kMigrateStart, false, 2, func() *action { return s.migrateStart(s.pickVMI(vs)) })
	}
	if vs := real(func(v *VMI) bool { return v.Migration == Migrating }); len(vs) > 0 {
		add(kMigrateComplete, false, 5, func() *action { return s.migrateComplete(s.pickVMI(vs)) })
	}
	if vs := real(func(v *VMI) bool { return v.Migration == Migrated }); len(vs) > 0 {
		add(kMigrateCleanup, false, 5, func() *action { return s.migrateCleanup(s.pickVMI(vs)) })
	}
	if vs := real(func(v *VMI) bool { return v.Phase == PhaseRunning || v.Phase == PhaseScheduled }); len(vs) > 0 {
		add(kStop, false, 1.5, func() *action { return s.stopReal(s.pickVMI(vs)) })
	}
	if vs := real(func(*VMI) bool { return true }); len(vs) > 0 {
		w := 1.0
		if len(real(func(v *VMI) bool { return v.Phase == PhaseSucceeded })) > 0 {
			w = 3
		}
		add(kDelete, false, w, func() *action { return s.deleteReal(s.pickVMI(vs)) })
	}

	// Volume VMIs, several at once.
	if free := s.freeVolumeNames(); len(free) > 0 {
		add(kVolCreate, false, 2, func() *action { return s.volumeCreate(free) })
	}
	if vs := volume(func(v *VMI) bool { return v.Phase == PhasePending }); len(vs) > 0 {
		add(kVolRun, false, 3, func() *action { return s.volumeRun(s.pickSome(vs)) })
	}
	if vs := volume(func(v *VMI) bool { return v.Phase == PhaseRunning && !v.Paused }); len(vs) > 0 {
		add(kVolPause, false, 1, func() *action { return s.volumePause(s.pickSome(vs), true) })
	}
	if vs := volume(func(v *VMI) bool { return v.Paused }); len(vs) > 0 {
		add(kVolResume, false, 1, func() *action { return s.volumePause(s.pickSome(vs), false) })
	}
	if vs := volume(func(v *VMI) bool { return v.Phase == PhaseRunning }); len(vs) > 0 {
		add(kVolStop, false, 1, func() *action { return s.volumeStop(s.pickSome(vs)) })
	}
	if vs := volume(func(*VMI) bool { return true }); len(vs) > 0 {
		add(kVolDelete, false, 1, func() *action { return s.volumeDelete(s.pickSome(vs)) })
	}

	// Faults at launchers.
	var up, down, linked, unlinked []*Launcher
	for _, l := range s.world.Launchers() {
		if l.Daemon {
			up = append(up, l)
		} else {
			down = append(down, l)
		}
		if l.Socket {
			linked = append(linked, l)
		} else {
			unlinked = append(unlinked, l)
		}
	}
	if len(up) > 0 {
		add(kKill, true, 1.5, func() *action { return s.kill(s.pickLauncher(up)) })
		add(kKillRestart, true, 1, func() *action { return s.killRestart(s.pickLauncher(up)) })
	}
	if len(down) > 0 {
		add(kRestart, true, 3, func() *action { return s.restart(s.pickLauncher(down)) })
	}
	if len(linked) > 0 {
		add(kSockRemove, true, 1, func() *action { return s.sockRemove(s.pickLauncher(linked)) })
	}
	if len(unlinked) > 0 {
		add(kSockRestore, true, 2, func() *action { return s.sockRestore(s.pickLauncher(unlinked)) })
	}

	// Faults at the API server, spaced so that client-go's backoff is not all that is
	// measured.
	if s.cycle-s.lastAPIFault >= s.apiEvery {
		add(kAPIRestart, true, 1.5, s.apiRestart)
		add(kWatchExpiry, true, 1.5, s.watchExpiry)
	}
	return cs
}

func (s *soak) freeRealNames() []string {
	var free []string
	for i := range realNames {
		name := fmt.Sprintf("vm-%d", i)
		if _, ok := s.world.VMIs[RealNamespace+"/"+name]; !ok {
			free = append(free, name)
		}
	}
	return free
}

func (s *soak) freeVolumeNames() []string {
	var free []string
	for i := range VolumeNames {
		if _, ok := s.world.VMIs[VolumeNamespace+"/"+VolumeName(i)]; !ok {
			free = append(free, VolumeName(i))
		}
	}
	return free
}

func (s *soak) domainType() string {
	if s.chance(50) {
		return "kvm"
	}
	return "qemu"
}

func (s *soak) createReal(name string) *action {
	v := &VMI{Namespace: RealNamespace, Name: name, Phase: PhasePending}
	return &action{kind: kCreate, bound: eventBound, desc: "create " + v.Key(), do: func(ctx context.Context) error {
		return s.createVMI(ctx, v)
	}}
}

// schedule gives a Pending VMI its launcher pod on a node, with its guest running or
// (as while virt-launcher is still starting it) not yet.
func (s *soak) schedule(v *VMI) *action {
	node := LauncherNodes[s.rng.IntN(len(LauncherNodes))]
	typ := s.domainType()
	noGuest := s.chance(30)
	desc := fmt.Sprintf("schedule %s on %s (%s", v.Key(), node, typ)
	if noGuest {
		desc += ", domain not started"
	}
	return &action{kind: kSchedule, bound: eventBound, desc: desc + ")", do: func(ctx context.Context) error {
		l, err := s.startLauncher(ctx, v, node, typ)
		if err != nil {
			return err
		}
		v.Launchers, v.Node, v.Phase = []*Launcher{l}, node, PhaseScheduled
		if noGuest {
			if err := s.destroyGuest(l); err != nil {
				return err
			}
		}
		return s.writeVMI(ctx, v)
	}}
}

// run makes a Scheduled VMI Running. A guest that is not up yet is started first or,
// in the race the README allows for, after the VMI is Running.
func (s *soak) run(v *VMI) *action {
	l := current(v)
	startBefore, startAfter := false, false
	if !l.Guest && l.Daemon {
		startAfter = s.chance(50)
		startBefore = !startAfter
	}
	desc := "run " + v.Key()
	bound := eventBound
	switch {
	case startBefore:
		desc += " (domain started first)"
	case startAfter:
		desc += " (domain started after Running)"
		bound = libvirtBound
	case !l.Guest:
		desc += " (domain not started)"
	}
	if !l.Healthy() {
		bound = libvirtBound
	}
	return &action{kind: kRun, bound: bound, desc: desc, do: func(ctx context.Context) error {
		if startBefore {
			if err := s.startGuest(ctx, l); err != nil {
				return err
			}
		}
		v.Phase = PhaseRunning
		if err := s.writeVMI(ctx, v); err != nil {
			return err
		}
		if startAfter {
			return s.startGuest(ctx, l)
		}
		return nil
	}}
}

func (s *soak) startGuestAction(v *VMI) *action {
	l := current(v)
	return &action{kind: kStartGuest, bound: libvirtBound, desc: "start the domain of Running " + v.Key(), do: func(ctx context.Context) error {
		return s.startGuest(ctx, l)
	}}
}

// pauseReal pauses or resumes the guest in libvirt and sets or clears the Paused
// condition, in either order.
func (s *soak) pauseReal(v *VMI, pause bool) *action {
	l := current(v)
	conditionFirst := s.chance(50)
	kind, desc := kResume, "resume "+v.Key()
	if pause {
		kind, desc = kPause, "pause "+v.Key()
	}
	// Resuming a guest makes libvirt send an event, on which the receiver looks again.
	return &action{kind: kind, bound: eventBound, desc: desc, do: func(ctx context.Context) error {
		guest := func() error {
			if !l.Guest || l.Suspended == pause {
				return nil
			}
			return s.suspendGuest(l, pause)
		}
		if !conditionFirst {
			if err := guest(); err != nil {
				return err
			}
		}
		v.Paused = pause
		if err := s.writeVMI(ctx, v); err != nil {
			return err
		}
		if conditionFirst {
			return guest()
		}
		return nil
	}}
}

// migrateStart starts a target launcher on the other node and lists it in activePods;
// sometimes the VMI moves to it at once.
func (s *soak) migrateStart(v *VMI) *action {
	src := current(v)
	target := otherNode(v.Node)
	direct := s.chance(30)
	desc := fmt.Sprintf("migrate %s from %s to %s", v.Key(), v.Node, target)
	if direct {
		desc += " (completes at once)"
	}
	return &action{kind: kMigrateStart, bound: eventBound, desc: desc, do: func(ctx context.Context) error {
		l, err := s.startLauncher(ctx, v, target, src.DomainType)
		if err != nil {
			return err
		}
		v.Launchers = append(v.Launchers, l)
		v.Migration = Migrating
		if direct {
			v.Node, v.Migration = target, Migrated
		}
		return s.writeVMI(ctx, v)
	}}
}

// migrateComplete moves the VMI to its target node; the source pod stays listed until
// cleaned up, which sometimes happens at once.
func (s *soak) migrateComplete(v *VMI) *action {
	target := otherNode(v.Node)
	cleanup := s.chance(30)
	statusFirst := s.chance(50)
	desc := fmt.Sprintf("complete migration of %s to %s", v.Key(), target)
	if cleanup {
		desc += " and delete the source pod"
	}
	return &action{kind: kMigrateComplete, bound: eventBound, desc: desc, do: func(ctx context.Context) error {
		v.Node, v.Migration = target, Migrated
		if err := s.writeVMI(ctx, v); err != nil {
			return err
		}
		if cleanup {
			return s.cleanupSource(ctx, v, statusFirst)
		}
		return nil
	}}
}

func (s *soak) migrateCleanup(v *VMI) *action {
	statusFirst := s.chance(50)
	return &action{kind: kMigrateCleanup, bound: eventBound, desc: "delete the migration source pod of " + v.Key(), do: func(ctx context.Context) error {
		return s.cleanupSource(ctx, v, statusFirst)
	}}
}

// cleanupSource deletes the source launcher of a migrated VMI and drops it from
// activePods, in either order.
func (s *soak) cleanupSource(ctx context.Context, v *VMI, statusFirst bool) error {
	var src *Launcher
	var keep []*Launcher
	for _, l := range v.Launchers {
		if l.Node == v.Node {
			keep = append(keep, l)
		} else {
			src = l
		}
	}
	if !statusFirst {
		if err := s.teardown(src); err != nil {
			return err
		}
	}
	v.Launchers, v.Migration = keep, NotMigrating
	if err := s.writeVMI(ctx, v); err != nil {
		return err
	}
	if statusFirst {
		return s.teardown(src)
	}
	return nil
}

// stopReal stops a VMI: phase Succeeded, its launcher pods deleted; the domain is
// sometimes destroyed before the phase changes, as virt-handler does.
func (s *soak) stopReal(v *VMI) *action {
	l := current(v)
	guestFirst := v.Phase == PhaseRunning && l != nil && l.Guest && l.Daemon && s.chance(50)
	desc := "stop " + v.Key()
	if guestFirst {
		desc += " (domain destroyed first)"
	}
	return &action{kind: kStop, bound: eventBound, desc: desc, do: func(ctx context.Context) error {
		if guestFirst {
			if err := s.destroyGuest(l); err != nil {
				return err
			}
		}
		v.Phase, v.Paused = PhaseSucceeded, false
		if err := s.writeVMI(ctx, v); err != nil {
			return err
		}
		for _, l := range v.Launchers {
			if err := s.teardown(l); err != nil {
				return err
			}
		}
		v.Migration = NotMigrating
		return nil
	}}
}

// deleteReal deletes a VMI and its launcher pods, the pods first or last.
func (s *soak) deleteReal(v *VMI) *action {
	podsFirst := s.chance(50)
	desc := "delete " + v.Key()
	if podsFirst && len(v.Launchers) > 0 {
		desc += " (launcher pods first)"
	}
	return &action{kind: kDelete, bound: eventBound, desc: desc, do: func(ctx context.Context) error {
		teardown := func() error {
			for _, l := range v.Launchers {
				if err := s.teardown(l); err != nil {
					return err
				}
			}
			return nil
		}
		if podsFirst {
			if err := teardown(); err != nil {
				return err
			}
		}
		if err := s.deleteVMI(ctx, v); err != nil {
			return err
		}
		return teardown()
	}}
}

func (s *soak) volumeCreate(free []string) *action {
	k := 1 + s.rng.IntN(min(len(free), maxBulk))
	idx := s.rng.Perm(len(free))[:k]
	slices.Sort(idx)
	vs := make([]*VMI, k)
	for i, j := range idx {
		vs[i] = &VMI{Namespace: VolumeNamespace, Name: free[j], Volume: true, Phase: PhasePending}
	}
	return &action{kind: kVolCreate, bound: eventBound, n: k, desc: "create " + keys(vs), do: func(ctx context.Context) error {
		for _, v := range vs {
			if err := s.createVMI(ctx, v); err != nil {
				return err
			}
		}
		return nil
	}}
}

func (s *soak) volumeRun(vs []*VMI) *action {
	viaScheduled := s.chance(50)
	return &action{kind: kVolRun, bound: eventBound, n: len(vs), desc: "run " + keys(vs), do: func(ctx context.Context) error {
		for _, v := range vs {
			v.Node = NodeVolume
			if viaScheduled {
				v.Phase = PhaseScheduled
				if err := s.writeVMI(ctx, v); err != nil {
					return err
				}
			}
			v.Phase = PhaseRunning
			if err := s.writeVMI(ctx, v); err != nil {
				return err
			}
		}
		return nil
	}}
}

func (s *soak) volumePause(vs []*VMI, pause bool) *action {
	kind, verb := kVolResume, "resume "
	if pause {
		kind, verb = kVolPause, "pause "
	}
	return &action{kind: kind, bound: eventBound, n: len(vs), desc: verb + keys(vs), do: func(ctx context.Context) error {
		for _, v := range vs {
			v.Paused = pause
			if err := s.writeVMI(ctx, v); err != nil {
				return err
			}
		}
		return nil
	}}
}

func (s *soak) volumeStop(vs []*VMI) *action {
	return &action{kind: kVolStop, bound: eventBound, n: len(vs), desc: "stop " + keys(vs), do: func(ctx context.Context) error {
		for _, v := range vs {
			v.Phase, v.Paused = PhaseSucceeded, false
			if err := s.writeVMI(ctx, v); err != nil {
				return err
			}
		}
		return nil
	}}
}

func (s *soak) volumeDelete(vs []*VMI) *action {
	return &action{kind: kVolDelete, bound: eventBound, n: len(vs), desc: "delete " + keys(vs), do: func(ctx context.Context) error {
		for _, v := range vs {
			if err := s.deleteVMI(ctx, v); err != nil {
				return err
			}
		}
		return nil
	}}
}

// launcherName names a launcher in the action log: its VMI, node and pod UID prefix.
func (s *soak) launcherName(l *Launcher) string {
	p := s.pod(l)
	return fmt.Sprintf("%s/%s's launcher %.8s on %s", p.Namespace, p.Name, l.PodUID, l.Node)
}

func (s *soak) kill(l *Launcher) *action {
	sig := syscall.SIGKILL
	if s.chance(50) {
		sig = syscall.SIGTERM
	}
	return &action{kind: kKill, fault: true, bound: libvirtBound, desc: fmt.Sprintf("kill libvirtd of %s (%v)", s.launcherName(l), sig),
		do: func(context.Context) error { return s.killDaemon(l, sig) }}
}

func (s *soak) restart(l *Launcher) *action {
	return &action{kind: kRestart, fault: true, bound: libvirtBound, desc: "start libvirtd of " + s.launcherName(l),
		do: func(ctx context.Context) error { return s.startDaemon(ctx, l) }}
}

func (s *soak) killRestart(l *Launcher) *action {
	sig := syscall.SIGKILL
	if s.chance(50) {
		sig = syscall.SIGTERM
	}
	return &action{kind: kKillRestart, fault: true, bound: libvirtBound, desc: fmt.Sprintf("kill (%v) and restart libvirtd of %s", sig, s.launcherName(l)),
		do: func(ctx context.Context) error {
			if err := s.killDaemon(l, sig); err != nil {
				return err
			}
			return s.startDaemon(ctx, l)
		}}
}

func (s *soak) sockRemove(l *Launcher) *action {
	return &action{kind: kSockRemove, fault: true, bound: libvirtBound, desc: "remove the socket of " + s.launcherName(l),
		do: func(context.Context) error { return s.removeSocket(l) }}
}

func (s *soak) sockRestore(l *Launcher) *action {
	return &action{kind: kSockRestore, fault: true, bound: libvirtBound, desc: "restore the socket of " + s.launcherName(l),
		do: func(context.Context) error { return s.restoreSocket(l) }}
}

// apiRestart stops kube-apiserver, makes up to two changes at launchers while it is
// away, and starts it again. Its watches are ended first (through the proxy), as a
// stopping server ends them.
func (s *soak) apiRestart() *action {
	during := s.rng.IntN(3)
	outage := time.Duration(s.rng.IntN(3000)) * time.Millisecond
	return &action{kind: kAPIRestart, fault: true, bound: apiBound,
		desc: fmt.Sprintf("restart kube-apiserver (down %v; meanwhile up to %d changes at launchers, below)", outage, during),
		do: func(ctx context.Context) error {
			s.lastAPIFault = s.cycle
			s.cutOff = true
			s.proxy.Cut()
			if err := s.api.StopKubeAPIServer(); err != nil {
				return err
			}
			s.proxy.Restore()
			for range during {
				if a := s.next(libvirtOnly); a != nil {
					if err := s.apply(ctx, a); err != nil {
						return err
					}
				}
			}
			// The outage's length, not a wait for anything.
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(outage):
			}
			if err := s.api.StartKubeAPIServer(ctx); err != nil {
				return err
			}
			s.reconnected()
			return s.canariesUp(ctx)
		}}
}

// watchExpiry cuts the collectors off the API server, changes VMIs behind their back and
// restarts kube-apiserver, whose new watch cache begins after those changes: watches
// resumed from before them are refused as expired (410 Gone) and the collectors list
// again.
func (s *soak) watchExpiry() *action {
	during := 1 + s.rng.IntN(4)
	return &action{kind: kWatchExpiry, fault: true, bound: apiBound,
		desc: fmt.Sprintf("expire the watches (%d VMI changes while the collectors are cut off, below)", during),
		do: func(ctx context.Context) error {
			s.lastAPIFault = s.cycle
			s.cutOff = true
			s.proxy.Cut()
			for range during {
				if a := s.next(eventsOnly); a != nil {
					if err := s.apply(ctx, a); err != nil {
						return err
					}
				}
			}
			if err := s.api.Restart(ctx); err != nil {
				return err
			}
			s.proxy.Restore()
			s.reconnected()
			return s.canariesUp(ctx)
		}}
}
