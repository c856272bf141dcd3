package detect

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/launcher"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/libvirtconn"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/vmi"
)

// NewLauncherReader returns a Reader that reads each VMI's domain from its own
// virt-launcher pod on node, the way KubeVirt runs them: first the status file libvirt
// keeps in the pod's libvirt-runtime emptyDir (a file read: no RPC, no daemon lock),
// else that launcher's libvirt socket, whose connection is then kept for its events.
// podsDir is the host's kubelet pods directory as mounted in the collector; timeout
// bounds each libvirt call.
func NewLauncherReader(podsDir, node string, timeout time.Duration, h Handlers) Reader {
	return &launcherReader{podsDir: podsDir, node: node, timeout: timeout, handlers: h, ready: make(chan struct{})}
}

type launcherReader struct {
	podsDir, node string
	timeout       time.Duration
	handlers      Handlers

	ready chan struct{}   // closed when Run starts; connections made before wait for it
	ctx   context.Context // Run's; set before ready is closed

	mu     sync.Mutex
	closed bool // Run is ending: start no more goroutines
	wg     sync.WaitGroup
}

// LauncherConn is a connection to one launcher's libvirt, opened by a Reader for one
// VMI. Until closed it keeps itself up, reconnecting, and passes on the launcher's
// domain events.
type LauncherConn struct {
	socket string
	conn   *libvirtconn.Conn
	stop   context.CancelFunc
}

// Close closes the connection; a nil LauncherConn is closed already.
func (c *LauncherConn) Close() {
	if c == nil {
		return
	}
	c.stop()
	c.conn.Close()
}

// Detect implements Reader. A VMI with no launcher on this node, or whose launcher's
// socket does not exist yet, has no domain yet. A status file that cannot be read or
// parsed is passed over for the socket, which is the authority.
func (r *launcherReader) Detect(ctx context.Context, v *vmi.VMI, conn *LauncherConn) (Result, *LauncherConn, error) {
	launchers, err := launcher.Find(r.podsDir, r.node, v)
	if errors.Is(err, launcher.ErrNoLauncher) {
		return Result{}, conn, fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	if err != nil {
		return Result{}, conn, err
	}
	// Two launchers on one node only while a VMI migrates within the node. Both run the
	// same kind of domain; the first that answers is as good as the other.
	var errs []error
	var last Result
	for _, l := range launchers {
		if xml, err := l.ReadStatus(); err == nil {
			res, err := parse(xml, l.StatusFile)
			if err == nil {
				return res, conn, nil
			}
			last, errs = res, append(errs, err)
		} else if !errors.Is(err, launcher.ErrNoStatusFile) {
			errs = append(errs, err)
		}
		var xml string
		xml, conn, err = r.fromSocket(ctx, v.Key(), l, conn)
		if err == nil {
			res, err := parse(xml, l.Socket)
			if err == nil {
				return res, conn, nil
			}
			last = res
		}
		errs = append(errs, err)
	}
	err = errors.Join(errs...)
	if allNotFound(errs) {
		err = fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	return last, conn, err
}

func allNotFound(errs []error) bool {
	for _, err := range errs {
		if !errors.Is(err, ErrNotFound) {
			return false
		}
	}
	return true
}

// fromSocket asks the launcher's libvirt through conn, or through a new connection if
// conn is for another socket, trying the other URI path when the daemon refuses the
// one status.runtimeUser suggests. It returns the connection to keep.
func (r *launcherReader) fromSocket(ctx context.Context, key string, l launcher.Launcher, conn *LauncherConn) (string, *LauncherConn, error) {
	if _, err := os.Lstat(l.Socket); errors.Is(err, os.ErrNotExist) {
		// The launcher pod is still starting (or gone): not an outage.
		return "", conn, fmt.Errorf("%w: launcher socket %s does not exist", ErrNotFound, l.Socket)
	}
	if conn == nil || conn.socket != l.Socket {
		conn.Close()
		conn = r.dial(key, l.Socket, l.URI)
	}
	xml, err := conn.conn.DomainXML(ctx, l.Domain)
	if err != nil && launcher.IsPathRefused(err) {
		conn.Close()
		conn = r.dial(key, l.Socket, l.FallbackURI)
		xml, err = conn.conn.DomainXML(ctx, l.Domain)
	}
	return xml, conn, err
}

// dial makes a connection to the launcher socket for the VMI key, which keeps itself
// up once the Reader runs.
func (r *launcherReader) dial(key, socket, uri string) *LauncherConn {
	runCtx, cancel := context.WithCancel(context.Background())
	c := &LauncherConn{socket: socket, conn: libvirtconn.New(uri, r.timeout, r.handlers.conn(key)), stop: cancel}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.closed {
		r.wg.Go(func() {
			select {
			case <-r.ready:
				defer context.AfterFunc(r.ctx, cancel)()
			case <-runCtx.Done():
				return
			}
			c.conn.Run(runCtx)
		})
	}
	return c
}

// Run implements Reader: it lets the launchers' connections keep themselves up until
// ctx ends, then waits for them.
func (r *launcherReader) Run(ctx context.Context) {
	r.ctx = ctx
	close(r.ready)
	<-ctx.Done()
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.wg.Wait()
}

// Close implements Reader: the launcher connections belong to their VMIs' holders.
func (r *launcherReader) Close() {}
