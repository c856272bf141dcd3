// Package inventory holds one record per VMI of the node that the receiver is
// following: the type of its series and the type last read from libvirt for its
// launcher pods. Adding or changing a VMI is one Put, forgetting it one Delete. It
// remembers what changed since the last emission (new or changed series, series to
// retract), so that emitting after a change costs what changed, not the whole node.
// It reads nothing from Kubernetes or libvirt, holds no connection and builds no
// metrics.
package inventory

import (
	"sync"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/hypervisor"
)

// Record is what the receiver keeps about one VMI.
type Record struct {
	// Reported is the hypervisor_type of the VMI's series; "" while it has none (it is
	// Running but its domain is not there yet).
	Reported hypervisor.Type
	// Known is the type last read from libvirt, and KnownPods the UIDs of the launcher
	// pods it was read for. A running domain's hypervisor cannot change while its pod
	// lives, so while libvirt cannot be asked the VMI keeps this type rather than
	// turning unknown.
	Known     hypervisor.Type
	KnownPods []string
}

// Series is one series of the hypervisor metric: the VMI's key (namespace/name) and
// its hypervisor_type.
type Series struct {
	Key  string
	Type hypervisor.Type
}

// MaxUnsent is how many failed emissions a retraction rides in before it is given up:
// a pipeline that keeps failing (a backend down for good) must not keep retractions
// forever.
const MaxUnsent = 3

// MaxRetractions bounds the retractions waiting to be emitted. Only a pipeline that
// stops accepting batches while VMIs keep stopping gets near it; past it, the
// retractions of further removals are dropped, and their series leave the Prometheus
// endpoint at metric_expiration instead.
const MaxRetractions = 1 << 14

// Inventory is the set of records, keyed by VMI key. Each VMI's record is written by
// one worker at a time (the one syncing it), so Get, then a detection, then Put is
// safe; everything else may read concurrently. It is safe for concurrent use.
type Inventory struct {
	mu      sync.Mutex
	records map[string]entry
	// unsent lists, once each, the keys whose series changed since it was last
	// emitted.
	unsent []string
	// retract holds the series to retract, with how many emissions carrying their
	// retraction failed so far; taken holds those the last Changes or All handed out,
	// for Unsent to count against.
	retract, taken map[Series]int
	changed        chan struct{}
}

// entry is a Record as stored.
type entry struct {
	Record
	// unsent says the series changed since it was last emitted (the key is in unsent).
	unsent bool
}

// New returns an empty Inventory.
func New() *Inventory {
	return &Inventory{records: map[string]entry{}, retract: map[Series]int{}, changed: make(chan struct{}, 1)}
}

// Get returns the record of the VMI key.
func (inv *Inventory) Get(key string) (Record, bool) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	e, ok := inv.records[key]
	return e.Record, ok
}

// Put makes r the record of the VMI key. When its series changes, the old one (if
// any) is retracted and the new one (if any) emitted in the same batch, so that a VMI
// never shows two series.
func (inv *Inventory) Put(key string, r Record) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	old := inv.records[key]
	e := entry{Record: r, unsent: old.unsent}
	if r.Reported != old.Reported {
		inv.retractLocked(key, old.Reported)
		if r.Reported != "" {
			delete(inv.retract, Series{key, r.Reported})
			inv.markLocked(key, &e)
		}
		inv.signal()
	}
	inv.records[key] = e
}

// Delete forgets the VMI key: its series is retracted.
func (inv *Inventory) Delete(key string) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	e, ok := inv.records[key]
	if ok {
		delete(inv.records, key)
		if e.Reported != "" {
			inv.retractLocked(key, e.Reported)
			inv.signal()
		}
	}
}

func (inv *Inventory) retractLocked(key string, t hypervisor.Type) {
	if t == "" {
		return
	}
	if len(inv.retract) < MaxRetractions {
		inv.retract[Series{key, t}] = 0
	}
}

func (inv *Inventory) markLocked(key string, e *entry) {
	if !e.unsent {
		e.unsent = true
		inv.unsent = append(inv.unsent, key)
	}
}

// Changes returns the series that are new or changed since the last Changes or All,
// and the series to retract, and forgets both.
func (inv *Inventory) Changes() (live, retract []Series) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	live = make([]Series, 0, len(inv.unsent))
	for _, key := range inv.unsent {
		e, ok := inv.records[key]
		if !ok || !e.unsent {
			continue
		}
		e.unsent = false
		inv.records[key] = e
		if e.Reported != "" {
			live = append(live, Series{key, e.Reported})
		}
	}
	inv.clearUnsentLocked()
	return live, inv.takeRetractionsLocked()
}

// All returns every live series and the series to retract, and forgets what changed
// and the retractions.
func (inv *Inventory) All() (live, retract []Series) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	live = make([]Series, 0, len(inv.records))
	for key, e := range inv.records {
		if e.unsent {
			e.unsent = false
			inv.records[key] = e
		}
		if e.Reported != "" {
			live = append(live, Series{key, e.Reported})
		}
	}
	inv.clearUnsentLocked()
	return live, inv.takeRetractionsLocked()
}

// clearUnsentLocked empties unsent, letting go of what a burst of changes grew it to.
func (inv *Inventory) clearUnsentLocked() {
	if cap(inv.unsent) > 64 {
		inv.unsent = nil
		return
	}
	inv.unsent = inv.unsent[:0]
}

func (inv *Inventory) takeRetractionsLocked() []Series {
	if len(inv.retract) == 0 {
		inv.taken = nil
		return nil
	}
	out := make([]Series, 0, len(inv.retract))
	for s := range inv.retract {
		out = append(out, s)
	}
	// A fresh map rather than a cleared one, so that a burst of retractions does not
	// leave a large one behind.
	inv.taken, inv.retract = inv.retract, map[Series]int{}
	return out
}

// Unsent gives back what the last Changes or All returned but could not be
// delivered: the live series go out with the next batch unless they changed
// meanwhile, and the retractions, up to MaxUnsent times, unless their series is live
// again.
func (inv *Inventory) Unsent(live, retract []Series) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	for _, s := range live {
		e, ok := inv.records[s.Key]
		if ok && e.Reported == s.Type {
			inv.markLocked(s.Key, &e)
			inv.records[s.Key] = e
		}
	}
	for _, s := range retract {
		failed := inv.taken[s] + 1
		if e, ok := inv.records[s.Key]; ok && e.Reported == s.Type {
			continue
		}
		if _, pending := inv.retract[s]; pending || failed >= MaxUnsent || len(inv.retract) >= MaxRetractions {
			continue
		}
		inv.retract[s] = failed
	}
	inv.taken = nil
}

// Unanswered returns the keys of the VMIs that libvirt has not answered for: those
// without a series (waiting for their domain) or whose series is unknown.
func (inv *Inventory) Unanswered() []string {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	var keys []string
	for key, e := range inv.records {
		if e.Reported == "" || e.Reported == hypervisor.Unknown {
			keys = append(keys, key)
		}
	}
	return keys
}

// Changed is signalled, coalesced, after every change of a series.
func (inv *Inventory) Changed() <-chan struct{} {
	return inv.changed
}

func (inv *Inventory) signal() {
	select {
	case inv.changed <- struct{}{}:
	default:
	}
}
