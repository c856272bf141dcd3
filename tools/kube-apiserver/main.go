// Command kube-apiserver is the upstream Kubernetes API server, built from the module
// proxy because no Debian package ships it. Tests start it through envtest; it is never
// part of the collector distribution.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
