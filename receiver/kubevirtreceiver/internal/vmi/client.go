package vmi

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
)

// vmiClient lists and watches VMIs, decoding them into VMI.
type vmiClient struct {
	rest   rest.Interface
	params runtime.ParameterCodec
}

// newVMIClient returns a client for the VMI resource of the API server cfg points to.
func newVMIClient(cfg *rest.Config) (*vmiClient, error) {
	gv := Resource.GroupVersion()
	scheme := runtime.NewScheme()
	scheme.AddKnownTypeWithName(gv.WithKind("VirtualMachineInstance"), &VMI{})
	scheme.AddKnownTypeWithName(gv.WithKind("VirtualMachineInstanceList"), &vmiList{})
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

func (c *vmiClient) list(ctx context.Context, o metav1.ListOptions) (*vmiList, error) {
	l := &vmiList{}
	err := c.rest.Get().Resource(Resource.Resource).VersionedParams(&o, c.params).
		Timeout(timeout(o)).Do(ctx).Into(l)
	return l, err
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
