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
	return &uriReader{conn: libvirtconn.New(uri, timeout, h.conn(""))}
}

type uriReader struct {
	conn *libvirtconn.Conn
}

func (r *uriReader) Detect(ctx context.Context, v *vmi.VMI, _ *LauncherConn) (Result, *LauncherConn, error) {
	xml, err := r.conn.DomainXML(ctx, launcher.DomainName(v.Namespace, v.Name))
	if err != nil {
		return Result{From: r.conn.URI()}, nil, err
	}
	res, err := parse(xml, r.conn.URI())
	return res, nil, err
}

func (r *uriReader) Run(ctx context.Context) { r.conn.Run(ctx) }

func (r *uriReader) Close() { r.conn.Close() }
