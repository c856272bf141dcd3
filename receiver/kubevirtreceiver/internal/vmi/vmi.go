// Package vmi watches the KubeVirt VirtualMachineInstances of one node, decides which
// of them should be reported, and says whether the watch works (logging when it stops
// and starts working). It does not talk to libvirt.
package vmi

import (
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

// Resource is the KubeVirt VMI resource the receiver watches.
var Resource = schema.GroupVersionResource{Group: "kubevirt.io", Version: "v1", Resource: "virtualmachineinstances"}

// NodeLabel is the label KubeVirt keeps set to the node a VMI runs on. CRDs offer no
// field selector on status.nodeName, so watchers select on this label instead.
const NodeLabel = "kubevirt.io/nodeName"

// PhaseRunning is the VMI phase in which a domain exists and is reported.
const PhaseRunning = "Running"

// VMI is a VirtualMachineInstance as the receiver sees it: only the fields detection
// needs. It is the one shape of a VMI: the watch decodes the API server's JSON into it
// (see decode.go), its cache holds it, and every package that needs a VMI takes it.
// Cached VMIs are shared: never modify one.
type VMI struct {
	noMeta
	// Namespace and Name are metadata.namespace and metadata.name.
	Namespace, Name string
	// UID is metadata.uid: a VMI deleted and created again under the same name has a
	// new one.
	UID types.UID
	// ResourceVersion is metadata.resourceVersion.
	ResourceVersion string
	// Phase is status.phase.
	Phase string
	// NodeName is status.nodeName, the node whose launcher pod runs the domain.
	NodeName string
	// Pods are the UIDs of the VMI's virt-launcher pods on the watched node, sorted:
	// the entries of status.activePods that name it. Usually one. A migration within
	// the node adds the target's, and KubeVirt keeps listing every pod of the VMI
	// until the pod is deleted, so after a migration an entry may name a pod that
	// has ended, whose launcher (socket, status file) is gone.
	Pods []string
	// RuntimeUser is status.runtimeUser, the uid of the launcher's libvirt (107 by
	// default, 0 for root launchers).
	RuntimeUser int64
	// Paused is true while the VMI's Paused condition is True. Pausing keeps the
	// phase Running; resuming is a reason to look at the domain again.
	Paused bool
	// MigrationEnded is status.migrationState.migrationUid once that migration has
	// completed, else "". A migration within the node changes neither the node nor
	// the listed pods when it completes, yet the domain then runs in the target's
	// launcher: a reason to look at it again.
	MigrationEnded types.UID

	// activePods is status.activePods (pod UID -> node) as decoded, until the watch,
	// which knows its node, turns it into Pods.
	activePods map[string]string
	// initialEventsEnd is the one annotation the watch reads (see GetAnnotations).
	initialEventsEnd string
}

// Key is the key of the VMI namespace/name in the watch's cache, the work queue and
// the receiver's records: namespace/name.
func Key(namespace, name string) string {
	return namespace + "/" + name
}

// SplitKey returns the namespace and name of a VMI key. Neither can contain a '/', so
// the first one separates them; a key without one is a name without a namespace.
func SplitKey(key string) (namespace, name string) {
	if ns, name, ok := strings.Cut(key, "/"); ok {
		return ns, name
	}
	return "", key
}

// Key is the VMI's key (see [Key]).
func (v *VMI) Key() string {
	return Key(v.Namespace, v.Name)
}

// Reportable says whether the VMI should have a series on node, and if not, why.
func (v *VMI) Reportable(node string) (bool, string) {
	switch {
	case v.Namespace == "" || v.Name == "":
		return false, "no namespace or name"
	case v.Phase != PhaseRunning:
		return false, fmt.Sprintf("phase is %q, not Running", v.Phase)
	case v.NodeName == "":
		return false, "no status.nodeName"
	case v.NodeName != node:
		return false, fmt.Sprintf("runs on node %q", v.NodeName)
	}
	return true, ""
}

// forNode sets Pods to the VMI's launcher pods on node, once: a VMI that has been
// through it already (the informer may pass one again) is left as it is.
func (v *VMI) forNode(node string) {
	if v.activePods == nil {
		return
	}
	v.Pods = nil
	for uid, n := range v.activePods {
		if n == node {
			v.Pods = append(v.Pods, uid)
		}
	}
	slices.Sort(v.Pods)
	v.activePods = nil
}

// sameState says whether o is v as far as detection is concerned. Updates that change
// nothing here (guest agent data, interface lists, timestamps) need no new detection.
func (v *VMI) sameState(o *VMI) bool {
	return v.UID == o.UID && v.Phase == o.Phase && v.NodeName == o.NodeName &&
		v.RuntimeUser == o.RuntimeUser && v.Paused == o.Paused && v.MigrationEnded == o.MigrationEnded &&
		slices.Equal(v.Pods, o.Pods)
}
