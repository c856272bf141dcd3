package libvirtconn

import (
	"sync"

	"libvirt.org/go/libvirt"
)

var eventLoop sync.Once

// startEventLoop runs libvirt's default event loop, once per process. libvirt needs it
// for keepalive, for noticing a closed connection and for domain events. It runs until
// the process exits: libvirt offers no way to stop it, so leak checks ignore it
// (see EventLoopFunction).
func startEventLoop() {
	eventLoop.Do(func() {
		if err := libvirt.EventRegisterDefaultImpl(); err != nil {
			return // connections still work; events and keepalive do not
		}
		go func() {
			for {
				_ = libvirt.EventRunDefaultImpl()
			}
		}()
	})
}

// EventLoopFunction is on the event loop goroutine's stack, for goleak.IgnoreAnyFunction.
const EventLoopFunction = "libvirt.org/go/libvirt.EventRunDefaultImpl"
