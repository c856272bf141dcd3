package vmi

import (
	"encoding/hex"
	"maps"
	"slices"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

// cached is what the informer's cache holds for one VMI: the fields of VMI, packed,
// because a node's receiver keeps every VMI of the node for its whole life. Against
// the previous cache object (VMI with metav1.ObjectMeta embedded and a map for
// activePods), each saving below is measured in docs/benchmarks.md:
//
//   - key is namespace/name in one string; namespace and name are slices of it, and
//     the work queue and the series set share it as their key.
//   - the VMI's and its launcher pods' UIDs are held as 16-byte UUIDs instead of
//     36-byte strings (see uid).
//   - phase and node names are interned: one copy per watcher, not one per VMI.
//   - activePods is a slice sorted by pod UID instead of a map: a Go map costs
//     ~300 bytes even with one entry.
//   - the struct fits the 128-byte allocation size class; one more byte takes 144.
//
// client-go reads cached objects through meta.Accessor, so cached implements
// metav1.Object: the key as the name (see GetName), UID and resourceVersion (the
// informer tells updates from resyncs by it) are real, the rest are noMeta's no-ops.
type cached struct {
	noMeta
	key             string
	uid             uid
	resourceVersion string
	phase           string
	nodeName        string
	pods            []pod
	runtimeUser     int64
	paused          bool
}

// pod is one entry of status.activePods: a launcher pod's UID and its node.
type pod struct {
	uid  uid
	node string
}

// uid is a Kubernetes UID: a canonical lower-case UUID (8-4-4-4-12 hex digits, the only
// form the API server makes) packed into 16 bytes, anything else kept as text.
type uid struct {
	packed [16]byte
	text   *string
}

// packUID packs s; "" is the zero uid.
func packUID(s string) uid {
	if u, ok := parseUUID(s); ok && u != ([16]byte{}) { // zero means "no UID"
		return uid{packed: u}
	}
	if s == "" {
		return uid{}
	}
	text := strings.Clone(s)
	return uid{text: &text}
}

func (u uid) String() string {
	switch {
	case u.text != nil:
		return *u.text
	case u.packed == [16]byte{}:
		return ""
	default:
		return formatUUID(u.packed)
	}
}

func (u uid) equal(o uid) bool {
	if u.text == nil || o.text == nil {
		return u.text == o.text && u.packed == o.packed
	}
	return *u.text == *o.text
}

// compact packs v, interning repeated strings with in. Strings kept from v are
// copied so that the cache never pins a decoder's buffer.
func compact(v *VMI, in *interner) *cached {
	c := &cached{
		key:             Key(v.Namespace, v.Name),
		resourceVersion: strings.Clone(v.ResourceVersion),
		phase:           in.get(v.Phase),
		nodeName:        in.get(v.NodeName),
		runtimeUser:     v.RuntimeUser,
		paused:          v.Paused,
	}
	if v.Namespace == "" {
		c.key = strings.Clone(v.Name) // as client-go keys objects without a namespace
	}
	c.uid = packUID(string(v.UID))
	if len(v.ActivePods) > 0 {
		uids := slices.Sorted(maps.Keys(v.ActivePods))
		c.pods = make([]pod, 0, len(uids))
		for _, u := range uids {
			c.pods = append(c.pods, pod{uid: packUID(u), node: in.get(v.ActivePods[u])})
		}
	}
	return c
}

// vmi unpacks the cached VMI. Its strings are shared with the cache, not copied.
func (c *cached) vmi() *VMI {
	ns, name := SplitKey(c.key)
	v := &VMI{
		Namespace:       ns,
		Name:            name,
		UID:             c.GetUID(),
		ResourceVersion: c.resourceVersion,
		Phase:           c.phase,
		NodeName:        c.nodeName,
		RuntimeUser:     c.runtimeUser,
		Paused:          c.paused,
	}
	if len(c.pods) > 0 {
		v.ActivePods = make(map[string]string, len(c.pods))
		for _, p := range c.pods {
			v.ActivePods[p.uid.String()] = p.node
		}
	}
	return v
}

// sameState says whether o is c as far as detection is concerned. Updates that change
// nothing here (guest agent data, interface lists, timestamps) need no new detection.
func (c *cached) sameState(o *cached) bool {
	return c.uid.equal(o.uid) && c.phase == o.phase && c.nodeName == o.nodeName &&
		c.runtimeUser == o.runtimeUser && c.paused == o.paused &&
		slices.EqualFunc(c.pods, o.pods, func(a, b pod) bool { return a.uid.equal(b.uid) && a.node == b.node })
}

// GetNamespace implements metav1.Object: none, see GetName.
func (c *cached) GetNamespace() string { return "" }

// GetName implements metav1.Object with the whole key, namespace/name. client-go keys
// a cached object by its namespace and name joined with a '/', a new string per
// object, which would duplicate the key cached holds; reported as a name without a
// namespace, the key is the same string and client-go keeps c.key itself. Nothing
// else reads these names: the informer has no namespace index, and vmi unpacks the
// namespace and name from the key.
func (c *cached) GetName() string { return c.key }

// GetUID implements metav1.Object.
func (c *cached) GetUID() types.UID { return types.UID(c.uid.String()) }

// GetResourceVersion implements metav1.Object.
func (c *cached) GetResourceVersion() string { return c.resourceVersion }

// GetObjectKind implements runtime.Object; the cached form has no kind.
func (c *cached) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

// DeepCopyObject implements runtime.Object. Cached objects are never modified, so
// the copy shares their strings.
func (c *cached) DeepCopyObject() runtime.Object {
	d := *c
	d.pods = slices.Clone(c.pods)
	return &d
}

// parseUUID reads a canonical lower-case UUID (8-4-4-4-12 hex digits), the form the
// API server gives every object.
func parseUUID(s string) ([16]byte, bool) {
	var u [16]byte
	if len(s) != 36 {
		return u, false
	}
	n := 0 // hex digits read so far
	for i := range len(s) {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return u, false
			}
			continue
		}
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		default:
			return u, false
		}
		u[n/2] |= d << (4 * (1 - n%2))
		n++
	}
	return u, true
}

// formatUUID writes u in the canonical form parseUUID reads.
func formatUUID(u [16]byte) string {
	h := hex.EncodeToString(u[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// interner hands out one shared copy of strings that many VMIs repeat: node names and
// phases. It is bounded, so that odd values cannot grow it without limit: past
// maxInterned distinct strings it returns copies.
type interner struct {
	mu sync.Mutex
	m  map[string]string
}

// maxInterned is far above the node names and phases one node's VMIs can carry.
const maxInterned = 1024

func (in *interner) get(s string) string {
	if s == "" {
		return ""
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if c, ok := in.m[s]; ok {
		return c
	}
	c := strings.Clone(s)
	if len(in.m) < maxInterned {
		if in.m == nil {
			in.m = map[string]string{}
		}
		in.m[c] = c
	}
	return c
}
