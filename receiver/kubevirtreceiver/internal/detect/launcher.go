package detect

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/launcher"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/libvirtconn"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/vmi"
)

// NewLauncherReader returns a Reader that reads each VMI's domain from its own
// virt-launcher pod, the way KubeVirt runs them: first the status file libvirt keeps
// in the pod's libvirt-runtime emptyDir (a file read: no RPC, no daemon lock), else
// that launcher's libvirt socket, whose connection is then kept for the VMI, for its
// events. podsDir is the host's kubelet pods directory as mounted in the collector;
// timeout bounds each libvirt call.
func NewLauncherReader(podsDir string, timeout time.Duration, h Handlers) Reader {
	return &launcherReader{podsDir: podsDir, timeout: timeout, handlers: h,
		ready: make(chan struct{}), conns: map[string]*launcherConn{}}
}

type launcherReader struct {
	podsDir  string
	timeout  time.Duration
	handlers Handlers

	ready chan struct{}   // closed when Run starts; connections made before wait for it
	ctx   context.Context // Run's; set before ready is closed

	mu sync.Mutex
	// conns holds, by VMI key, the connection to the VMI's launcher that last
	// answered over its socket.
	conns  map[string]*launcherConn
	closed bool // Run is ending: start no more goroutines
	wg     sync.WaitGroup
}

// launcherConn is a connection to one launcher's libvirt for one VMI. Until closed it
// keeps itself up, reconnecting, and passes on the launcher's domain events.
type launcherConn struct {
	socket string
	conn   *libvirtconn.Conn
	stop   context.CancelFunc
}

func (c *launcherConn) close() {
	c.stop()
	c.conn.Close()
}

// Read implements Reader. A VMI with no launcher on this node, or whose launchers'
// sockets do not exist (yet), has no domain yet. A status file that cannot be read or
// parsed is passed over for the sockets, which are the authority.
func (r *launcherReader) Read(ctx context.Context, v *vmi.VMI) (Result, error) {
	key := v.Key()
	launchers, err := launcher.Find(r.podsDir, v)
	if errors.Is(err, launcher.ErrNoLauncher) {
		r.Forget(key)
		return Result{}, fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	if err != nil {
		return Result{}, err
	}
	kept := r.kept(key)
	if kept != nil && !slices.ContainsFunc(launchers, func(l launcher.Launcher) bool { return l.Socket == kept.socket }) {
		r.Forget(key) // its pod is no longer the VMI's
		kept = nil
	}
	// Every launcher runs the same kind of domain; the first that answers is as good
	// as another. Status files first: reading one that is not there costs no RPC.
	var errs []error
	var last Result
	for _, l := range launchers {
		xml, err := l.ReadStatus()
		if errors.Is(err, launcher.ErrNoStatusFile) {
			continue
		}
		if err == nil {
			res, perr := parse(xml, l.StatusFile)
			if perr == nil {
				if kept != nil && kept.socket != l.Socket {
					// Another launcher runs the domain now (a migration's target):
					// the kept connection's launcher is ending, and kept it would
					// go on dialling its socket after it is gone.
					r.Forget(key)
				}
				return res, nil
			}
			last, err = res, perr
		}
		errs = append(errs, err)
	}
	for _, l := range likelyFirst(launchers, kept) {
		xml, err := r.fromSocket(ctx, key, l)
		if err == nil {
			res, perr := parse(xml, l.Socket)
			if perr == nil {
				return res, nil
			}
			last, err = res, perr
		}
		errs = append(errs, err)
	}
	err = errors.Join(errs...)
	if allNotFound(errs) {
		err = fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	return last, err
}

// likelyFirst orders a VMI's launchers for asking their sockets, so that the one
// running its domain comes first: the one whose socket answered last, then those
// whose socket exists. Two launchers of one VMI on a node are a migration within the
// node or, once it is over, its ended source pod, which KubeVirt keeps listed in
// status.activePods until the pod is deleted; that pod's launcher is gone, and tried
// first it would cost a failed read every time.
func likelyFirst(launchers []launcher.Launcher, kept *launcherConn) []launcher.Launcher {
	if len(launchers) < 2 {
		return launchers
	}
	rank := func(l launcher.Launcher) int {
		switch {
		case kept != nil && l.Socket == kept.socket:
			return 0
		case socketExists(l.Socket):
			return 1
		default:
			return 2
		}
	}
	ranked := slices.Clone(launchers)
	ranks := make(map[string]int, len(ranked))
	for _, l := range ranked {
		ranks[l.Socket] = rank(l)
	}
	slices.SortStableFunc(ranked, func(a, b launcher.Launcher) int { return ranks[a.Socket] - ranks[b.Socket] })
	return ranked
}

func socketExists(path string) bool {
	_, err := os.Lstat(path)
	return !errors.Is(err, os.ErrNotExist)
}

func allNotFound(errs []error) bool {
	for _, err := range errs {
		if !errors.Is(err, ErrNotFound) {
			return false
		}
	}
	return true
}

// fromSocket asks the launcher's libvirt for the domain, through the VMI's kept
// connection if it is to this launcher, else through a new one, trying the other URI
// path when the daemon refuses the one status.runtimeUser suggests. A new connection
// is kept (in place of the old one) when its libvirt answered, or when the VMI has no
// other: a launcher whose libvirt cannot be reached must not take the place of one
// that could.
func (r *launcherReader) fromSocket(ctx context.Context, key string, l launcher.Launcher) (string, error) {
	if !socketExists(l.Socket) {
		// The launcher pod is still starting, or gone: not an outage.
		return "", fmt.Errorf("%w: launcher socket %s does not exist", ErrNotFound, l.Socket)
	}
	kept := r.kept(key)
	c := kept
	if c == nil || c.socket != l.Socket {
		c = r.dial(key, l.Socket, l.URI)
	}
	xml, err := c.conn.DomainXML(ctx, l.Domain)
	if err != nil && launcher.IsPathRefused(err) {
		if c == kept {
			r.Forget(key)
			kept = nil
		} else {
			c.close()
		}
		c = r.dial(key, l.Socket, l.FallbackURI)
		xml, err = c.conn.DomainXML(ctx, l.Domain)
	}
	switch {
	case c == kept:
	case err == nil || errors.Is(err, ErrNotFound) || kept == nil:
		r.keep(key, c)
	default:
		c.close()
	}
	return xml, err
}

// kept returns the VMI key's connection, if any.
func (r *launcherReader) kept(key string) *launcherConn {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.conns[key]
}

// keep makes c the VMI key's connection, closing the one it replaces.
func (r *launcherReader) keep(key string, c *launcherConn) {
	r.mu.Lock()
	old := r.conns[key]
	r.conns[key] = c
	r.mu.Unlock()
	if old != nil && old != c {
		old.close()
	}
}

// Forget implements Reader.
func (r *launcherReader) Forget(key string) {
	r.mu.Lock()
	c := r.conns[key]
	delete(r.conns, key)
	r.mu.Unlock()
	if c != nil {
		c.close()
	}
}

// dial makes a connection to the launcher socket for the VMI key, which keeps itself
// up once the Reader runs.
func (r *launcherReader) dial(key, socket, uri string) *launcherConn {
	runCtx, cancel := context.WithCancel(context.Background())
	c := &launcherConn{socket: socket, conn: libvirtconn.New(uri, r.timeout, r.handlers.forVMI(key)), stop: cancel}
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

// Close implements Reader.
func (r *launcherReader) Close() {
	r.mu.Lock()
	conns := r.conns
	r.conns = map[string]*launcherConn{}
	r.mu.Unlock()
	for _, c := range conns {
		c.close()
	}
}
