// Package series holds the current set of hypervisor series, one per reported VMI, and
// remembers the ones removed since the last emission so that they can be retracted.
package series

import (
	"sort"
	"sync"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/hypervisor"
)

// Series is one kubevirt.vmi.hypervisor.info data point's attributes.
type Series struct {
	Namespace string
	Name      string
	Node      string
	Type      hypervisor.Type
}

// Set is the current set of series keyed by VMI key. It is safe for concurrent use.
type Set struct {
	mu   sync.Mutex
	live map[string]Series
	// removed holds the series to retract, with how many batches carrying their
	// retraction failed so far.
	removed map[Series]int
	// unsent is what the last Take handed out, for Unsent to count against.
	unsent  map[Series]int
	changed chan struct{}
}

// NewSet returns an empty Set.
func NewSet() *Set {
	return &Set{
		live:    map[string]Series{},
		removed: map[Series]int{},
		unsent:  map[Series]int{},
		changed: make(chan struct{}, 1),
	}
}

// Put makes s the series of the VMI key. A different series the VMI had before is
// retracted in the same emission, so that a VMI never has two series at once.
func (st *Set) Put(key string, s Series) {
	st.mu.Lock()
	defer st.mu.Unlock()
	old, had := st.live[key]
	if had && old == s {
		return
	}
	if had {
		st.removed[old] = 0
	}
	delete(st.removed, s)
	st.live[key] = s
	st.signal()
}

// Delete removes the series of the VMI key, if it has one.
func (st *Set) Delete(key string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	old, had := st.live[key]
	if !had {
		return
	}
	delete(st.live, key)
	st.removed[old] = 0
	st.signal()
}

// Get returns the series of the VMI key.
func (st *Set) Get(key string) (Series, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	s, ok := st.live[key]
	return s, ok
}

// Take returns the live series and those removed since the previous Take, both sorted,
// and forgets the removed ones.
func (st *Set) Take() (live, removed []Series) {
	st.mu.Lock()
	defer st.mu.Unlock()
	live = make([]Series, 0, len(st.live))
	for _, s := range st.live {
		live = append(live, s)
	}
	removed = make([]Series, 0, len(st.removed))
	clear(st.unsent)
	for s, failed := range st.removed {
		removed = append(removed, s)
		st.unsent[s] = failed
	}
	clear(st.removed)
	sortSeries(live)
	sortSeries(removed)
	return live, removed
}

// MaxUnsent is how many failed batches a retraction rides in before it is given up: a
// pipeline that keeps failing (a backend down for good) must not make the set of
// pending retractions grow without bound.
const MaxUnsent = 3

// Unsent gives back retractions that the last Take returned but that could not be
// delivered, so that the next Take returns them again, up to MaxUnsent times; a series
// that is live again meanwhile needs none.
func (st *Set) Unsent(removed []Series) {
	st.mu.Lock()
	defer st.mu.Unlock()
	live := make(map[Series]bool, len(st.live))
	for _, s := range st.live {
		live[s] = true
	}
	for _, s := range removed {
		failed := st.unsent[s] + 1
		if _, pending := st.removed[s]; pending || live[s] || failed >= MaxUnsent {
			continue
		}
		st.removed[s] = failed
	}
}

// Changed is signalled, coalesced, after every change to the set.
func (st *Set) Changed() <-chan struct{} {
	return st.changed
}

func (st *Set) signal() {
	select {
	case st.changed <- struct{}{}:
	default:
	}
}

func sortSeries(s []Series) {
	sort.Slice(s, func(i, j int) bool {
		a, b := s[i], s[j]
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		if a.Node != b.Node {
			return a.Node < b.Node
		}
		return a.Type < b.Type
	})
}
