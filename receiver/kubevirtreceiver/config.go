package kubevirtreceiver

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/kube"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/launcher"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/metadata"
)

// Config is the kubevirt receiver's configuration. Defaults are in createDefaultConfig.
type Config struct {
	// NodeName is the node whose VMIs are reported, matched against the VMI label
	// kubevirt.io/nodeName. Required; a DaemonSet sets it from the downward API.
	NodeName string `mapstructure:"node_name"`
	// AuthType is how to reach the API server: serviceAccount, kubeConfig or none.
	AuthType kube.AuthType `mapstructure:"auth_type"`
	// Context is the kubeconfig context to use with auth_type kubeConfig; "" means the
	// kubeconfig's current context.
	Context string `mapstructure:"context"`
	// CollectionInterval is how often every current series (and the receiver's own
	// metrics) is emitted; after a change only what changed is emitted, at once. Keep
	// it at most half the Prometheus exporter's metric_expiration, or live series
	// expire between emissions.
	CollectionInterval time.Duration `mapstructure:"collection_interval"`
	// Libvirt says where each VMI's libvirt domain is found.
	Libvirt LibvirtConfig `mapstructure:"libvirt"`

	metadata.MetricsBuilderConfig `mapstructure:",squash"`
}

// LibvirtConfig says how the receiver reaches the libvirt that runs each VMI's domain.
type LibvirtConfig struct {
	// Source is where domains are looked up: "launcher" (the default) reads each VMI's
	// domain from its own virt-launcher pod below PodsDir, as on a KubeVirt node;
	// "uri" asks the one libvirt at URI for every VMI.
	Source string `mapstructure:"source"`
	// URI is the libvirt connection URI used with source "uri".
	URI string `mapstructure:"uri"`
	// PodsDir is the host's kubelet pods directory (/var/lib/kubelet/pods) as mounted
	// in the collector, used with source "launcher". Launcher sockets below it must fit
	// a unix socket path, so it must be short: /pods, as virt-handler mounts it.
	PodsDir string `mapstructure:"pods_dir"`
	// Timeout bounds each libvirt call.
	Timeout time.Duration `mapstructure:"timeout"`
}

// The values of libvirt.source.
const (
	// SourceURI reads every domain from the single libvirt at libvirt.uri.
	SourceURI = "uri"
	// SourceLauncher reads each domain from its virt-launcher pod's own libvirt.
	SourceLauncher = "launcher"
)

// Validate reports every invalid value, each naming its key.
func (c *Config) Validate() error {
	var errs []error
	if c.NodeName == "" {
		errs = append(errs, errors.New("node_name: must be set to the node whose VMIs to report (e.g. from the downward API: ${env:K8S_NODE_NAME})"))
	}
	if !slices.Contains(kube.AuthTypes, c.AuthType) {
		errs = append(errs, fmt.Errorf("auth_type: %q is not one of %v", c.AuthType, kube.AuthTypes))
	}
	if c.Context != "" && c.AuthType != kube.AuthKubeConfig {
		errs = append(errs, fmt.Errorf("context: only used with auth_type %q, not %q", kube.AuthKubeConfig, c.AuthType))
	}
	if c.CollectionInterval <= 0 {
		errs = append(errs, fmt.Errorf("collection_interval: must be positive, got %v", c.CollectionInterval))
	}
	switch c.Libvirt.Source {
	case SourceURI:
		if c.Libvirt.URI == "" {
			errs = append(errs, errors.New("libvirt.uri: must be set with libvirt.source \"uri\""))
		}
	case SourceLauncher:
		if err := launcher.ValidatePodsDir(c.Libvirt.PodsDir); err != nil {
			errs = append(errs, err)
		}
	default:
		errs = append(errs, fmt.Errorf("libvirt.source: %q is not one of [%s %s]", c.Libvirt.Source, SourceLauncher, SourceURI))
	}
	if c.Libvirt.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("libvirt.timeout: must be positive, got %v", c.Libvirt.Timeout))
	}
	return errors.Join(errs...)
}
