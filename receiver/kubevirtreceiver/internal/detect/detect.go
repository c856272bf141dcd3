// Package detect finds a VMI's running libvirt domain and reads its hypervisor: from
// the one libvirt at a URI, or from the VMI's own virt-launcher pod (the status file
// libvirt keeps there, else the launcher's libvirt socket). It owns the connections it
// opens: a launcher's is kept for its VMI, for the launcher's events, until the caller
// says the VMI is gone (Forget) or the Reader closes. It does not decide which VMIs
// are reported, and keeps no result.
package detect

import (
	"context"
	"errors"
	"fmt"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/hypervisor"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/libvirtconn"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/vmi"
)

// Reader reads the hypervisor of a VMI's domain from wherever libvirt keeps it.
type Reader interface {
	// Read reads the VMI's running domain and its hypervisor. An error wrapping
	// ErrNotFound means there is no such domain yet; one wrapping ErrInvalidXML, that
	// what libvirt gave could not be read (Result.XML holds it); any other, that
	// libvirt could not be asked. Reads of one VMI must not run at once; reads of
	// different VMIs may.
	Read(ctx context.Context, v *vmi.VMI) (Result, error)
	// Forget closes what the Reader keeps for the VMI key (its launcher's connection),
	// for when the VMI is no longer reported. Not at once with a Read of the same VMI.
	Forget(key string)
	// Run keeps connections up and events flowing until ctx ends.
	Run(ctx context.Context)
	// Close closes every connection the Reader holds, after Run has returned.
	Close()
}

// Handlers are told about a Reader's connections and domains. They run on libvirt's
// event loop or a reconnect loop and must not block.
type Handlers struct {
	// DomainStarted receives the key of the VMI whose domain started, resumed, was
	// restored or migrated in.
	DomainStarted func(key string)
	// Connected is called after a connection to libvirt was (re)established, with the
	// key of the one VMI it serves, or "" when it serves every VMI.
	Connected func(key string)
}

// forVMI adapts h to a connection that serves the VMI key alone: its domain events
// are that VMI's.
func (h Handlers) forVMI(key string) libvirtconn.Handlers {
	var c libvirtconn.Handlers
	if h.DomainStarted != nil {
		c.DomainStarted = func(string) { h.DomainStarted(key) }
	}
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
