package vmi

import (
	"encoding/json"
	"maps"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

// The watch decodes each VMI from the API server's JSON straight into VMI, reading only
// the fields the receiver needs: the decoder steps over the rest (the spec, most of the
// metadata and status, managedFields) without building anything, where a dynamic
// client would build every field into maps for nothing. Status fields are read
// leniently: one of the wrong type is absent, rather than failing the object, so that
// one malformed VMI cannot stop the watch.

// UnmarshalJSON implements json.Unmarshaler. It fails only on a document that is not
// an object with a well-formed metadata; a malformed status field is left out.
func (v *VMI) UnmarshalJSON(data []byte) error {
	var doc struct {
		Metadata struct {
			Namespace       string    `json:"namespace"`
			Name            string    `json:"name"`
			UID             types.UID `json:"uid"`
			ResourceVersion string    `json:"resourceVersion"`
			Annotations     struct {
				InitialEventsEnd string `json:"k8s.io/initial-events-end"`
			} `json:"annotations"`
		} `json:"metadata"`
		Status json.RawMessage `json:"status"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return err
	}
	m := doc.Metadata
	*v = VMI{Namespace: m.Namespace, Name: m.Name, UID: m.UID, ResourceVersion: m.ResourceVersion,
		initialEventsEnd: m.Annotations.InitialEventsEnd}
	v.decodeStatus(doc.Status)
	return nil
}

// decodeStatus reads each status field on its own and takes one that does not decode
// as absent; a status that is not an object is empty.
func (v *VMI) decodeStatus(data json.RawMessage) {
	var raw struct {
		Phase       json.RawMessage `json:"phase"`
		NodeName    json.RawMessage `json:"nodeName"`
		ActivePods  json.RawMessage `json:"activePods"`
		RuntimeUser json.RawMessage `json:"runtimeUser"`
		Conditions  json.RawMessage `json:"conditions"`
		Migration   json.RawMessage `json:"migrationState"`
	}
	if len(data) == 0 || json.Unmarshal(data, &raw) != nil {
		return
	}
	v.Phase = lenient[string](raw.Phase)
	v.NodeName = lenient[string](raw.NodeName)
	if pods := lenient[map[string]string](raw.ActivePods); len(pods) > 0 {
		v.activePods = pods
	}
	v.RuntimeUser = lenient[int64](raw.RuntimeUser)
	if m := lenient[struct {
		UID       types.UID `json:"migrationUid"`
		Completed bool      `json:"completed"`
	}](raw.Migration); m.Completed {
		v.MigrationEnded = m.UID
	}
	for _, c := range lenient[[]json.RawMessage](raw.Conditions) {
		cond := lenient[struct{ Type, Status string }](c)
		if cond.Type == "Paused" && cond.Status == "True" {
			v.Paused = true
		}
	}
}

// lenient decodes data as a T, or returns T's zero value if it does not decode.
func lenient[T any](data json.RawMessage) T {
	var v T
	if len(data) == 0 || json.Unmarshal(data, &v) != nil {
		var zero T
		return zero
	}
	return v
}

// client-go reads objects through meta.Accessor, keys them by namespace/name and tells
// updates from resyncs by resourceVersion: VMI answers those, noMeta the rest.
var _ metav1.Object = (*VMI)(nil)

// GetNamespace implements metav1.Object.
func (v *VMI) GetNamespace() string { return v.Namespace }

// GetName implements metav1.Object.
func (v *VMI) GetName() string { return v.Name }

// GetUID implements metav1.Object.
func (v *VMI) GetUID() types.UID { return v.UID }

// GetResourceVersion implements metav1.Object.
func (v *VMI) GetResourceVersion() string { return v.ResourceVersion }

// GetAnnotations implements metav1.Object with the one annotation client-go's
// reflector reads: the mark on the bookmark that ends a watch list's initial events.
// Without it a reflector that streams its first list would never know the list is
// complete.
func (v *VMI) GetAnnotations() map[string]string {
	if v.initialEventsEnd == "" {
		return nil
	}
	return map[string]string{metav1.InitialEventsAnnotationKey: v.initialEventsEnd}
}

// GetObjectKind implements runtime.Object: the decoder clears the kind of what it
// decodes anyway.
func (v *VMI) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

// DeepCopyObject implements runtime.Object.
func (v *VMI) DeepCopyObject() runtime.Object {
	d := *v
	d.Pods = slices.Clone(v.Pods)
	d.activePods = maps.Clone(v.activePods)
	return &d
}

// vmiList is a VirtualMachineInstanceList as the watch decodes it.
type vmiList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata"`
	Items           []VMI `json:"items"`
}

// DeepCopyObject implements runtime.Object.
func (l *vmiList) DeepCopyObject() runtime.Object {
	d := *l
	d.Items = make([]VMI, len(l.Items))
	for i := range l.Items {
		d.Items[i] = *l.Items[i].DeepCopyObject().(*VMI)
	}
	return &d
}
