// Package libvirtconn is one connection to one libvirt: dialled lazily, every call
// bounded by a timeout, kept alive with libvirt's keepalive, re-established after a
// loss, and passing on the lifecycle events that say a domain is worth reading again.
// It reads a running domain's live XML by name. It knows nothing of VMIs, launcher pods
// or hypervisor types (internal/detect puts those together).
package libvirtconn

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"libvirt.org/go/libvirt"
)

// ErrNotFound means libvirt has no running domain of that name (yet).
var ErrNotFound = errors.New("domain not found")

// Handlers are told about a Conn's connection and its domains. Both run on libvirt's
// event loop or the reconnect loop and must not block.
type Handlers struct {
	// DomainStarted receives the name of a domain that started, resumed, was restored
	// or migrated in: a moment when its hypervisor may be new.
	DomainStarted func(domain string)
	// Connected is called after the connection to libvirt was (re)established, so that
	// what could not be read while it was away can be read again.
	Connected func()
}

// Conn reads domains from one libvirt URI over a single reused connection, which it
// keeps alive with libvirt's keepalive and re-establishes after a loss. It is safe for
// concurrent use.
type Conn struct {
	uri      string
	timeout  time.Duration
	handlers Handlers

	mu      sync.Mutex
	conn    *libvirt.Connect
	eventID int           // lifecycle callback on conn; -1 if none
	lost    chan struct{} // signalled when conn is found dead
}

// New returns a Conn to uri whose libvirt calls each give up after timeout. It
// connects lazily, so a libvirt that is not up yet is not an error here.
func New(uri string, timeout time.Duration, h Handlers) *Conn {
	startEventLoop()
	return &Conn{uri: uri, timeout: timeout, handlers: h, eventID: -1, lost: make(chan struct{}, 1)}
}

// URI is the libvirt URI this Conn talks to.
func (c *Conn) URI() string { return c.uri }

// DomainXML returns the live XML of the running domain called name. It returns an error
// wrapping ErrNotFound when no such domain runs.
func (c *Conn) DomainXML(ctx context.Context, name string) (string, error) {
	return withTimeout(ctx, c, func() (string, error) {
		conn, err := c.connection()
		if err != nil {
			return "", err
		}
		xml, err := lookupXML(conn, name)
		if err != nil && !errors.Is(err, ErrNotFound) {
			if alive, aerr := conn.IsAlive(); aerr != nil || !alive {
				c.drop(conn)
			}
		}
		return xml, err
	})
}

func lookupXML(conn *libvirt.Connect, name string) (string, error) {
	dom, err := conn.LookupDomainByName(name)
	if err != nil {
		var lverr libvirt.Error
		if errors.As(err, &lverr) && lverr.Code == libvirt.ERR_NO_DOMAIN {
			return "", fmt.Errorf("%w: %s", ErrNotFound, name)
		}
		return "", fmt.Errorf("looking up domain %s: %w", name, err)
	}
	defer dom.Free()
	active, err := dom.IsActive()
	if err != nil {
		return "", fmt.Errorf("domain %s: %w", name, err)
	}
	if !active {
		// A defined but stopped domain has no live type yet.
		return "", fmt.Errorf("%w: %s is not running", ErrNotFound, name)
	}
	xml, err := dom.GetXMLDesc(0)
	if err != nil {
		return "", fmt.Errorf("reading XML of domain %s: %w", name, err)
	}
	return xml, nil
}

// Run keeps the connection up until ctx ends: it connects, and after every loss
// reconnects with reconnectBackoff, telling Handlers.Connected each time. Lookups work
// without Run, but only Run notices a restarted libvirt by itself.
func (c *Conn) Run(ctx context.Context) {
	for {
		// A fresh backoff per loss: the first retry after an outage is quick again.
		err := reconnectBackoff.DelayFunc().Until(ctx, true, true, func(context.Context) (bool, error) {
			_, err := c.connection()
			return err == nil, nil
		})
		if err != nil { // ctx ended
			return
		}
		if c.handlers.Connected != nil {
			c.handlers.Connected()
		}
		select {
		case <-ctx.Done():
			return
		case <-c.lost:
		}
	}
}

// reconnectBackoff spaces the attempts to reach a lost libvirt: 100 ms, doubling up to
// 2 s, then every 2 s. Short enough that a restarted libvirt is noticed within seconds,
// long enough not to spin on a dead socket. Steps only has to outlast the doublings:
// reaching Cap ends the growth and keeps the delay at Cap.
var reconnectBackoff = wait.Backoff{
	Duration: 100 * time.Millisecond,
	Factor:   2,
	Cap:      2 * time.Second,
	Steps:    math.MaxInt32,
}

// Keepalive: a libvirt that stops answering for keepaliveInterval*keepaliveCount
// seconds is treated as gone.
const (
	keepaliveInterval = 5
	keepaliveCount    = 3
)

func (c *Conn) connection() (*libvirt.Connect, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil {
		return c.conn, nil
	}
	conn, err := libvirt.NewConnect(c.uri)
	if err != nil {
		return nil, fmt.Errorf("connecting to libvirt at %s: %w", c.uri, err)
	}
	// Drivers without a remote connection (the test driver) support neither; the
	// connection is still usable.
	_ = conn.SetKeepAlive(keepaliveInterval, keepaliveCount)
	// Off the event loop: drop takes c.mu, which a caller may hold while libvirt waits
	// for the event loop. It compares our conn: the callback's argument is a new wrapper.
	_ = conn.RegisterCloseCallback(func(*libvirt.Connect, libvirt.ConnectCloseReason) { go c.drop(conn) })
	if c.handlers.DomainStarted != nil {
		if id, err := conn.DomainEventLifecycleRegister(nil, c.lifecycle); err == nil {
			c.eventID = id
		}
	}
	c.conn = conn
	return conn, nil
}

func (c *Conn) lifecycle(_ *libvirt.Connect, d *libvirt.Domain, ev *libvirt.DomainEventLifecycle) {
	if ev.Event != libvirt.DOMAIN_EVENT_STARTED && ev.Event != libvirt.DOMAIN_EVENT_RESUMED {
		return
	}
	if name, err := d.GetName(); err == nil {
		c.handlers.DomainStarted(name)
	}
}

// drop forgets conn if it is still the current connection, so that the next call dials
// anew, and wakes Run to reconnect.
func (c *Conn) drop(conn *libvirt.Connect) {
	c.mu.Lock()
	if c.conn == nil || c.conn != conn {
		c.mu.Unlock()
		return
	}
	c.closeLocked()
	c.mu.Unlock()
	select {
	case c.lost <- struct{}{}:
	default:
	}
}

func (c *Conn) closeLocked() {
	if c.eventID >= 0 {
		_ = c.conn.DomainEventDeregister(c.eventID)
		c.eventID = -1
	}
	_ = c.conn.UnregisterCloseCallback()
	_, _ = c.conn.Close()
	c.conn = nil
}

// withTimeout runs call, returning early if it takes longer than c's timeout or ctx
// ends. libvirt's C calls cannot be interrupted, so a call that overruns finishes in
// the background and its result is discarded: it reaches the caller only through the
// channel, never through a variable the caller may be reading by then.
func withTimeout[T any](ctx context.Context, c *Conn, call func() (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	type result struct {
		val T
		err error
	}
	done := make(chan result, 1)
	go func() {
		val, err := call()
		done <- result{val, err}
	}()
	select {
	case r := <-done:
		return r.val, r.err
	case <-ctx.Done():
		var zero T
		return zero, fmt.Errorf("libvirt at %s: %w", c.uri, ctx.Err())
	}
}

// Close closes the connection, if any.
func (c *Conn) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil {
		c.closeLocked()
	}
}
