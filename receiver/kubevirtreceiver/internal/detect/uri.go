package detect

import (
	"context"
	"time"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/launcher"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/libvirtconn"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/vmi"
)

// NewURIReader returns a Reader that reads every domain from the one libvirt at uri,
// each call bounded by timeout.
func NewURIReader(uri string, timeout time.Duration, h Handlers) Reader {
	c := libvirtconn.Handlers{}
	if h.DomainStarted != nil {
		// One libvirt for every VMI: the domain's name is all there is to go by.
		c.DomainStarted = func(domain string) {
			if ns, name, ok := launcher.SplitDomainName(domain); ok {
				h.DomainStarted(vmi.Key(ns, name))
			}
		}
	}
	if h.Connected != nil {
		c.Connected = func() { h.Connected("") }
	}
	return &uriReader{conn: libvirtconn.New(uri, timeout, c)}
}

type uriReader struct {
	conn *libvirtconn.Conn
}

func (r *uriReader) Read(ctx context.Context, v *vmi.VMI) (Result, error) {
	xml, err := r.conn.DomainXML(ctx, launcher.DomainName(v.Namespace, v.Name))
	if err != nil {
		return Result{From: r.conn.URI()}, err
	}
	return parse(xml, r.conn.URI())
}

// Forget implements Reader: the one connection serves every VMI.
func (r *uriReader) Forget(string) {}

func (r *uriReader) Run(ctx context.Context) { r.conn.Run(ctx) }

func (r *uriReader) Close() { r.conn.Close() }
