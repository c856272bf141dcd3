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

// VMI is the slim view of a VirtualMachineInstance: only the fields detection needs.
// The watch decodes only these fields (see wire), its cache holds them packed smaller
// still (see cached), and Watcher.Get unpacks them. Every package that needs a VMI
// takes this type.
type VMI struct {
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
	// ActivePods is status.activePods: launcher pod UID -> node.
	ActivePods map[string]string
	// RuntimeUser is status.runtimeUser, the uid of the launcher's libvirt (107 by
	// default, 0 for root launchers).
	RuntimeUser int64
	// Paused is true while the VMI's Paused condition is True. Pausing keeps the
	// phase Running; resuming is a reason to look at the domain again.
	Paused bool
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

// LauncherPods returns the UIDs of the VMI's launcher pods on node, sorted. During a
// migration a VMI has one on the source and one on the target node.
func (v *VMI) LauncherPods(node string) []string {
	var uids []string
	for uid, n := range v.ActivePods {
		if n == node {
			uids = append(uids, uid)
		}
	}
	slices.Sort(uids)
	return uids
}
