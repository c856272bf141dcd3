// Package detect finds a VMI's running libvirt domain and reads its hypervisor: from
// the one libvirt at a URI, or from the VMI's own virt-launcher pod (the status file
// libvirt keeps there, else the launcher's libvirt socket). It does not decide which
// VMIs are reported, and it keeps nothing about a VMI between detections: a connection
// it opens to a launcher is handed to the caller, who keeps it with the VMI and closes
// it when the VMI goes.
package detect

import (
	"context"
	"errors"
	"fmt"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/hypervisor"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/libvirtconn"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/vmi"
)

// Reader detects the hypervisor of a VMI's domain from wherever libvirt keeps it.
type Reader interface {
	// Detect reads the VMI's running domain and its hypervisor. conn is the launcher
	// connection the previous Detect of this VMI returned (nil the first time); Detect
	// returns the one to keep: conn itself, a new one (having closed conn), or nil.
	// An error wrapping ErrNotFound means there is no such domain yet; one wrapping
	// ErrInvalidXML, that what libvirt gave could not be read (Result.XML holds it);
	// any other, that libvirt could not be asked.
	Detect(ctx context.Context, v *vmi.VMI, conn *LauncherConn) (Result, *LauncherConn, error)
	// Run keeps connections up and events flowing until ctx ends.
	Run(ctx context.Context)
	// Close closes the connections the Reader holds itself (not the LauncherConns it
	// handed out).
	Close()
}

// Handlers are told about a Reader's connections and domains. They run on libvirt's
// event loop or a reconnect loop and must not block.
type Handlers struct {
	// DomainStarted receives the name of a domain that started, resumed, was restored
	// or migrated in.
	DomainStarted func(domain string)
	// Connected is called after a connection to libvirt was (re)established, with the
	// key of the one VMI it serves, or "" when it serves every VMI.
	Connected func(key string)
}

// conn adapts h to one connection that serves the VMI key.
func (h Handlers) conn(key string) libvirtconn.Handlers {
	c := libvirtconn.Handlers{DomainStarted: h.DomainStarted}
	if h.Connected != nil {
		c.Connected = func() { h.Connected(key) }
	}
	return c
}

var (
	// ErrNotFound means the VMI has no running domain (yet).
	ErrNotFound = libvirtconn.ErrNotFound
	// ErrInvalidXML means a domain's XML could not be parsed.
	ErrInvalidXML = errors.New("invalid domain XML")
)

// Result is what a Reader found.
type Result struct {
	hypervisor.Detection
	// XML is the domain XML the detection read.
	XML string
	// From says where it was read: a libvirt URI, a socket or a status file.
	From string
}

// parse reads xml's hypervisor into a Result.
func parse(xml, from string) (Result, error) {
	det, err := hypervisor.Detect(xml)
	res := Result{Detection: det, XML: xml, From: from}
	if err != nil {
		return res, fmt.Errorf("%w from %s: %w", ErrInvalidXML, from, err)
	}
	return res, nil
}
