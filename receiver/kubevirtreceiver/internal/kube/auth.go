// Package kube turns the receiver's auth settings into a Kubernetes client configuration.
package kube

import (
	"fmt"
	"net"
	"os"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// AuthType says how the receiver authenticates to the Kubernetes API server.
type AuthType string

// The supported auth types.
const (
	// AuthServiceAccount uses the pod's service account: the way a DaemonSet runs.
	AuthServiceAccount AuthType = "serviceAccount"
	// AuthKubeConfig uses $KUBECONFIG, or ~/.kube/config, and an optional context.
	AuthKubeConfig AuthType = "kubeConfig"
	// AuthNone sends no credentials to the in-cluster API server address.
	AuthNone AuthType = "none"
)

// AuthTypes lists every valid AuthType, for messages.
var AuthTypes = []AuthType{AuthServiceAccount, AuthKubeConfig, AuthNone}

// RESTConfig builds the client configuration for auth. It reads local files only and
// never contacts the API server, so an unreachable cluster is not an error here.
func RESTConfig(auth AuthType, context string) (*rest.Config, error) {
	switch auth {
	case AuthServiceAccount:
		cfg, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("auth_type %q needs to run in a pod with a service account (use %q outside a cluster): %w", auth, AuthKubeConfig, err)
		}
		return cfg, nil
	case AuthKubeConfig:
		rules := clientcmd.NewDefaultClientConfigLoadingRules()
		overrides := &clientcmd.ConfigOverrides{CurrentContext: context}
		cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides).ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("auth_type %q: loading kubeconfig (KUBECONFIG or ~/.kube/config): %w", auth, err)
		}
		return cfg, nil
	case AuthNone:
		host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
		if host == "" || port == "" {
			// Outside a pod the in-cluster name does not resolve; the watch keeps retrying.
			host, port = "kubernetes.default.svc", "443"
		}
		return &rest.Config{
			Host:            "https://" + net.JoinHostPort(host, port),
			TLSClientConfig: rest.TLSClientConfig{Insecure: true},
		}, nil
	default:
		return nil, fmt.Errorf("auth_type %q is not one of %v", auth, AuthTypes)
	}
}
