// Command pause is the sandbox process of every pod on the lab's node: what
// registry.k8s.io/pause does (hold the pod's namespaces, reap orphans when it is the
// pod's init, exit on SIGTERM or SIGINT), built here because the node has no
// registry to pull that image from. hack/images.sh packs it, static, into an image
// of its own.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for sig := range sigs {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
