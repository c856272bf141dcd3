package vmi

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
)

// The watch decodes each VMI from the API server's JSON straight into wire, which has
// only the fields the receiver reads: the decoder steps over the rest (the spec, most
// of the metadata and status, managedFields) without building anything, where a
// dynamic client would build every field into maps for the transform to throw away.
// That is most of the CPU a VMI update costs the receiver, and most of the garbage of
// the first list. Status fields are read leniently: one of the wrong type is absent,
// rather than failing the object, so that one malformed VMI cannot stop the watch.

// wire is a VirtualMachineInstance as the watch decodes it.
type wire struct {
	noMeta
	metav1.TypeMeta `json:",inline"`
	Metadata        wireMeta   `json:"metadata"`
	Status          wireStatus `json:"status"`
}

type wireMeta struct {
	Namespace       string          `json:"namespace"`
	Name            string          `json:"name"`
	UID             types.UID       `json:"uid"`
	ResourceVersion string          `json:"resourceVersion"`
	Annotations     wireAnnotations `json:"annotations"`
}

// wireAnnotations is the one annotation client-go's reflector reads: the mark on the
// bookmark that ends a watch list's initial events. Without it a reflector that
// streams its first list would never know the list is complete.
type wireAnnotations struct {
	InitialEventsEnd string `json:"k8s.io/initial-events-end"`
}

// wireStatus is the part of status.* detection reads.
type wireStatus struct {
	Phase       string
	NodeName    string
	ActivePods  map[string]string
	RuntimeUser int64
	Paused      bool
}

// UnmarshalJSON reads each field on its own and takes one that does not decode as
// absent; a status that is not an object is empty. It never fails.
func (s *wireStatus) UnmarshalJSON(data []byte) error {
	*s = wireStatus{}
	var raw struct {
		Phase       json.RawMessage `json:"phase"`
		NodeName    json.RawMessage `json:"nodeName"`
		ActivePods  json.RawMessage `json:"activePods"`
		RuntimeUser json.RawMessage `json:"runtimeUser"`
		Conditions  json.RawMessage `json:"conditions"`
	}
	if json.Unmarshal(data, &raw) != nil {
		return nil
	}
	s.Phase = lenient[string](raw.Phase)
	s.NodeName = lenient[string](raw.NodeName)
	if pods := lenient[map[string]string](raw.ActivePods); len(pods) > 0 {
		s.ActivePods = pods
	}
	s.RuntimeUser = lenient[int64](raw.RuntimeUser)
	for _, c := range lenient[[]json.RawMessage](raw.Conditions) {
		cond := lenient[struct{ Type, Status string }](c)
		if cond.Type == "Paused" && cond.Status == "True" {
			s.Paused = true
		}
	}
	return nil
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

// vmi is the slim view of w.
func (w *wire) vmi() *VMI {
	return &VMI{
		Namespace: w.Metadata.Namespace, Name: w.Metadata.Name, UID: w.Metadata.UID,
		ResourceVersion: w.Metadata.ResourceVersion,
		Phase:           w.Status.Phase, NodeName: w.Status.NodeName, ActivePods: w.Status.ActivePods,
		RuntimeUser: w.Status.RuntimeUser, Paused: w.Status.Paused,
	}
}

// client-go reads objects before the transform through meta.Accessor and keys them
// by namespace/name: wire answers those, noMeta the rest.

// GetNamespace implements metav1.Object.
func (w *wire) GetNamespace() string { return w.Metadata.Namespace }

// GetName implements metav1.Object.
func (w *wire) GetName() string { return w.Metadata.Name }

// GetUID implements metav1.Object.
func (w *wire) GetUID() types.UID { return w.Metadata.UID }

// GetResourceVersion implements metav1.Object.
func (w *wire) GetResourceVersion() string { return w.Metadata.ResourceVersion }

// GetAnnotations implements metav1.Object with the one annotation wire keeps.
func (w *wire) GetAnnotations() map[string]string {
	if w.Metadata.Annotations.InitialEventsEnd == "" {
		return nil
	}
	return map[string]string{metav1.InitialEventsAnnotationKey: w.Metadata.Annotations.InitialEventsEnd}
}

// DeepCopyObject implements runtime.Object.
func (w *wire) DeepCopyObject() runtime.Object {
	d := *w
	d.Status.ActivePods = maps.Clone(w.Status.ActivePods)
	return &d
}

// wireList is a VirtualMachineInstanceList as the watch decodes it.
type wireList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata"`
	Items           []wire `json:"items"`
}

// DeepCopyObject implements runtime.Object.
func (l *wireList) DeepCopyObject() runtime.Object {
	d := *l
	d.Items = make([]wire, len(l.Items))
	for i := range l.Items {
		d.Items[i] = *l.Items[i].DeepCopyObject().(*wire)
	}
	return &d
}

// vmiClient lists and watches VMIs, decoding them into wire.
type vmiClient struct {
	rest   rest.Interface
	params runtime.ParameterCodec
}

// newVMIClient returns a client for the VMI resource of the API server cfg points to.
func newVMIClient(cfg *rest.Config) (*vmiClient, error) {
	gv := Resource.GroupVersion()
	scheme := runtime.NewScheme()
	scheme.AddKnownTypeWithName(gv.WithKind("VirtualMachineInstance"), &wire{})
	scheme.AddKnownTypeWithName(gv.WithKind("VirtualMachineInstanceList"), &wireList{})
	metav1.AddToGroupVersion(scheme, gv) // list options, watch events, statuses
	cfg = rest.CopyConfig(cfg)
	cfg.GroupVersion = &gv
	cfg.APIPath = "/apis"
	cfg.ContentType = runtime.ContentTypeJSON
	cfg.NegotiatedSerializer = serializer.NewCodecFactory(scheme).WithoutConversion()
	c, err := rest.RESTClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("client for %s: %w", Resource, err)
	}
	return &vmiClient{rest: c, params: runtime.NewParameterCodec(scheme)}, nil
}

func (c *vmiClient) list(ctx context.Context, o metav1.ListOptions) (*wireList, error) {
	list := &wireList{}
	err := c.rest.Get().Resource(Resource.Resource).VersionedParams(&o, c.params).
		Timeout(timeout(o)).Do(ctx).Into(list)
	return list, err
}

func (c *vmiClient) watch(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
	o.Watch = true
	return c.rest.Get().Resource(Resource.Resource).VersionedParams(&o, c.params).
		Timeout(timeout(o)).Watch(ctx)
}

// timeout is the request timeout the list options ask for, as generated clients set it.
func timeout(o metav1.ListOptions) time.Duration {
	if o.TimeoutSeconds == nil {
		return 0
	}
	return time.Duration(*o.TimeoutSeconds) * time.Second
}
