// Package domain reaches the libvirt domain behind a VMI and returns its live XML.
package domain

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"libvirt.org/go/libvirt"
)

// ErrNotFound means libvirt has no running domain of that name (yet).
var ErrNotFound = errors.New("domain not found")

// Name is the libvirt domain name KubeVirt's launcher gives a VMI.
func Name(namespace, name string) string {
	return namespace + "_" + name
}

// Client reads domains from one libvirt URI over a single reused connection. It is safe
// for concurrent use; libvirt connections are thread-safe.
type Client struct {
	uri     string
	timeout time.Duration

	mu   sync.Mutex
	conn *libvirt.Connect
}

// NewClient returns a Client for uri whose libvirt calls each give up after timeout. It
// connects lazily, so a libvirt that is not up yet is not an error here.
func NewClient(uri string, timeout time.Duration) *Client {
	return &Client{uri: uri, timeout: timeout}
}

// URI is the libvirt URI this client talks to.
func (c *Client) URI() string { return c.uri }

// DomainXML returns the live XML of the running domain called name. It returns an error
// wrapping ErrNotFound when no such domain runs.
func (c *Client) DomainXML(ctx context.Context, name string) (string, error) {
	var xml string
	err := c.withTimeout(ctx, func() error {
		conn, err := c.connection()
		if err != nil {
			return err
		}
		xml, err = lookupXML(conn, name)
		if err != nil && !errors.Is(err, ErrNotFound) && !isAlive(conn) {
			// The daemon went away: forget the connection so the next call dials anew.
			c.drop(conn)
		}
		return err
	})
	return xml, err
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

func isAlive(conn *libvirt.Connect) bool {
	alive, err := conn.IsAlive()
	return err == nil && alive
}

func (c *Client) connection() (*libvirt.Connect, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil {
		return c.conn, nil
	}
	conn, err := libvirt.NewConnect(c.uri)
	if err != nil {
		return nil, fmt.Errorf("connecting to libvirt at %s: %w", c.uri, err)
	}
	c.conn = conn
	return conn, nil
}

func (c *Client) drop(conn *libvirt.Connect) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == conn {
		c.conn = nil
		conn.Close()
	}
}

// withTimeout runs call, returning early if it takes longer than the client's timeout or
// ctx ends. libvirt's C calls cannot be interrupted, so a call that overruns finishes in
// the background and its result is discarded.
func (c *Client) withTimeout(ctx context.Context, call func() error) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- call() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("libvirt at %s: %w", c.uri, ctx.Err())
	}
}

// Close closes the connection, if any. The Client can still be used afterwards; it
// reconnects on the next call.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		return nil
	}
	_, err := c.conn.Close()
	c.conn = nil
	return err
}
