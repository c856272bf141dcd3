package domain

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/hypervisor"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/launcher"
)

// Reader detects the hypervisor of a VMI's domain from wherever libvirt keeps it.
type Reader interface {
	// Detect reads the VMI's running domain and its hypervisor. An error wrapping
	// ErrNotFound means there is no such domain yet; one wrapping ErrInvalidXML, that
	// what libvirt gave could not be read (Result.XML holds it).
	Detect(ctx context.Context, key string, v launcher.VMI) (Result, error)
	// Run keeps connections up and events flowing until ctx ends.
	Run(ctx context.Context)
	// Forget releases what was held for the VMI key, which is gone from this node.
	Forget(key string)
	// Close closes every connection.
	Close()
}

// ReaderHandlers are told about a Reader's connections and domains. They run on
// libvirt's event loop or a reconnect loop and must not block.
type ReaderHandlers struct {
	// DomainStarted receives the name of a domain that started, resumed, was restored
	// or migrated in.
	DomainStarted func(domain string)
	// Reconnected is called after a connection to libvirt was (re)established, with
	// the key of the one VMI it serves, or "" when it serves every VMI.
	Reconnected func(key string)
}

// clientHandlers adapts h to one Client whose connection serves the VMI key.
func (h ReaderHandlers) clientHandlers(key string) Handlers {
	c := Handlers{DomainStarted: h.DomainStarted}
	if h.Reconnected != nil {
		c.Connected = func() { h.Reconnected(key) }
	}
	return c
}

// ErrInvalidXML means a domain's XML could not be parsed.
var ErrInvalidXML = errors.New("invalid domain XML")

// Result is what a Reader found.
type Result struct {
	hypervisor.Detection
	// XML is the domain XML the detection read.
	XML string
	// From says where it was read: a libvirt URI, a socket or a status file.
	From string
}

// detect reads xml's hypervisor into a Result.
func detect(xml, from string) (Result, error) {
	det, err := hypervisor.Detect(xml)
	res := Result{Detection: det, XML: xml, From: from}
	if err != nil {
		return res, fmt.Errorf("%w from %s: %w", ErrInvalidXML, from, err)
	}
	return res, nil
}

// URIReader reads every domain from the one libvirt at a URI.
type URIReader struct {
	client *Client
}

// NewURIReader returns a Reader for the libvirt at uri.
func NewURIReader(uri string, timeout time.Duration, h ReaderHandlers) *URIReader {
	return &URIReader{client: NewClient(uri, timeout, h.clientHandlers(""))}
}

// Detect implements Reader.
func (r *URIReader) Detect(ctx context.Context, _ string, v launcher.VMI) (Result, error) {
	xml, err := r.client.DomainXML(ctx, Name(v.Namespace, v.Name))
	if err != nil {
		return Result{From: r.client.URI()}, err
	}
	return detect(xml, r.client.URI())
}

// Run implements Reader.
func (r *URIReader) Run(ctx context.Context) { r.client.Run(ctx) }

// Forget implements Reader; the one connection serves every VMI.
func (r *URIReader) Forget(string) {}

// Close implements Reader.
func (r *URIReader) Close() { r.client.Close() }

// LauncherReader reads each VMI's domain from its own virt-launcher pod, the way
// KubeVirt runs them: first the status file libvirt keeps in the pod's libvirt-runtime
// emptyDir (a file read: no RPC, no daemon lock), else that launcher's libvirt socket,
// whose connection is then kept for its events.
type LauncherReader struct {
	podsDir, node string
	timeout       time.Duration
	handlers      ReaderHandlers

	ready chan struct{}   // closed when Run starts; connections made before wait for it
	ctx   context.Context // Run's; set before ready is closed

	mu      sync.Mutex
	clients map[string]*launcherClient // by VMI key
	closed  bool                       // Run is ending: start no more goroutines
	wg      sync.WaitGroup
}

// launcherClient is the connection to one launcher's libvirt.
type launcherClient struct {
	socket string
	client *Client
	cancel context.CancelFunc
}

// NewLauncherReader returns a Reader for the launchers of node below podsDir, the host's
// kubelet pods directory as mounted in the collector.
func NewLauncherReader(podsDir, node string, timeout time.Duration, h ReaderHandlers) *LauncherReader {
	return &LauncherReader{
		podsDir: podsDir, node: node, timeout: timeout, handlers: h,
		ready:   make(chan struct{}),
		clients: map[string]*launcherClient{},
	}
}

// Detect implements Reader. A VMI with no launcher on this node, or whose launcher's
// socket does not exist yet, has no domain yet. A status file that cannot be read or
// parsed is passed over for the socket, which is the authority.
func (r *LauncherReader) Detect(ctx context.Context, key string, v launcher.VMI) (Result, error) {
	launchers, err := launcher.Find(r.podsDir, r.node, v)
	if errors.Is(err, launcher.ErrNoLauncher) {
		return Result{}, fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	if err != nil {
		return Result{}, err
	}
	// Two launchers on one node only while a VMI migrates within the node. Both run the
	// same kind of domain; the first that answers is as good as the other.
	var errs []error
	var last Result
	for _, l := range launchers {
		if xml, err := l.ReadStatus(); err == nil {
			res, err := detect(xml, l.StatusFile)
			if err == nil {
				return res, nil
			}
			last, errs = res, append(errs, err)
		} else if !errors.Is(err, launcher.ErrNoStatusFile) {
			errs = append(errs, err)
		}
		xml, err := r.fromSocket(ctx, key, l)
		if err == nil {
			res, err := detect(xml, l.Socket)
			if err == nil {
				return res, nil
			}
			last = res
		}
		errs = append(errs, err)
	}
	err = errors.Join(errs...)
	if allNotFound(errs) {
		err = fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	return last, err
}

func allNotFound(errs []error) bool {
	for _, err := range errs {
		if !errors.Is(err, ErrNotFound) {
			return false
		}
	}
	return true
}

// fromSocket asks the launcher's libvirt, trying the other URI path when the daemon
// refuses the one status.runtimeUser suggests.
func (r *LauncherReader) fromSocket(ctx context.Context, key string, l launcher.Launcher) (string, error) {
	if _, err := os.Lstat(l.Socket); errors.Is(err, os.ErrNotExist) {
		// The launcher pod is still starting (or gone): not an outage.
		return "", fmt.Errorf("%w: launcher socket %s does not exist", ErrNotFound, l.Socket)
	}
	c := r.client(key, l.Socket, l.URI)
	xml, err := c.DomainXML(ctx, l.Domain)
	if err != nil && launcher.IsPathRefused(err) {
		c = r.replaceClient(key, l.Socket, l.FallbackURI)
		xml, err = c.DomainXML(ctx, l.Domain)
	}
	return xml, err
}

// client returns the VMI's connection to socket, creating it with uri if needed.
func (r *LauncherReader) client(key, socket, uri string) *Client {
	r.mu.Lock()
	if lc, ok := r.clients[key]; ok && lc.socket == socket {
		r.mu.Unlock()
		return lc.client
	}
	r.mu.Unlock()
	return r.replaceClient(key, socket, uri)
}

// replaceClient makes a new connection for the VMI, closing any previous one: a new
// launcher pod or the other URI path.
func (r *LauncherReader) replaceClient(key, socket, uri string) *Client {
	runCtx, cancel := context.WithCancel(context.Background())
	lc := &launcherClient{socket: socket, client: NewClient(uri, r.timeout, r.handlers.clientHandlers(key)), cancel: cancel}
	r.mu.Lock()
	old := r.clients[key]
	r.clients[key] = lc
	if !r.closed {
		r.wg.Go(func() {
			select {
			case <-r.ready:
				defer context.AfterFunc(r.ctx, cancel)()
			case <-runCtx.Done():
				return
			}
			lc.client.Run(runCtx)
		})
	}
	r.mu.Unlock()
	if old != nil {
		old.stop()
	}
	return lc.client
}

func (lc *launcherClient) stop() {
	lc.cancel()
	lc.client.Close()
}

// Run implements Reader: it lets the launchers' connections keep themselves up until
// ctx ends, then waits for them.
func (r *LauncherReader) Run(ctx context.Context) {
	r.ctx = ctx
	close(r.ready)
	<-ctx.Done()
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.wg.Wait()
}

// Forget implements Reader: the VMI's launcher connection is closed.
func (r *LauncherReader) Forget(key string) {
	r.mu.Lock()
	lc := r.clients[key]
	delete(r.clients, key)
	r.mu.Unlock()
	if lc != nil {
		lc.stop()
	}
}

// Close implements Reader.
func (r *LauncherReader) Close() {
	r.mu.Lock()
	clients := r.clients
	r.clients = map[string]*launcherClient{}
	r.mu.Unlock()
	for _, lc := range clients {
		lc.stop()
	}
}
