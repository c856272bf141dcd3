package kubevirtreceiver

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/kube"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/metadata"
)

func TestLoadConfig(t *testing.T) {
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "config.yaml"))
	require.NoError(t, err)

	defaults := createDefaultConfig().(*Config)
	withNode := *defaults
	withNode.NodeName = "worker-node-1"

	tests := []struct {
		id   component.ID
		want *Config
	}{
		{id: component.NewID(metadata.Type), want: &withNode},
		{id: component.NewIDWithName(metadata.Type, "custom"), want: &Config{
			NodeName:           "worker-node-2",
			AuthType:           kube.AuthKubeConfig,
			Context:            "lab",
			CollectionInterval: 10 * time.Second,
			Libvirt: LibvirtConfig{
				Source:  SourceURI,
				URI:     "qemu+unix:///session?socket=/run/libvirt/libvirt-sock",
				PodsDir: "/pods",
				Timeout: 2 * time.Second,
			},
			MetricsBuilderConfig: metadata.NewDefaultMetricsBuilderConfig(),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.id.String(), func(t *testing.T) {
			cfg := createDefaultConfig()
			sub, err := cm.Sub(tt.id.String())
			require.NoError(t, err)
			require.NoError(t, sub.Unmarshal(cfg))
			require.NoError(t, confmap.Validate(cfg))
			assert.Equal(t, tt.want, cfg)
		})
	}
}

func TestDefaultConfig(t *testing.T) {
	cfg := createDefaultConfig().(*Config)
	assert.Equal(t, kube.AuthServiceAccount, cfg.AuthType)
	assert.Equal(t, 30*time.Second, cfg.CollectionInterval)
	assert.Equal(t, LibvirtConfig{Source: SourceLauncher, URI: "qemu:///system", PodsDir: "/pods", Timeout: 5 * time.Second}, cfg.Libvirt)
	assert.ErrorContains(t, confmap.Validate(cfg), "node_name", "node_name has no default and is required")
}

// TestInvalidConfigNamesTheKey proves that each invalid value fails validation with an
// error naming its key, the way the collector reports it at startup.
func TestInvalidConfigNamesTheKey(t *testing.T) {
	tests := []struct {
		key  string
		conf map[string]any
	}{
		{key: "node_name", conf: map[string]any{"node_name": ""}},
		{key: "auth_type", conf: map[string]any{"auth_type": "token"}},
		{key: "context", conf: map[string]any{"context": "lab"}},
		{key: "collection_interval", conf: map[string]any{"collection_interval": "0s"}},
		{key: "collection_interval", conf: map[string]any{"collection_interval": "-5s"}},
		{key: "libvirt.source", conf: map[string]any{"libvirt": map[string]any{"source": "socket"}}},
		{key: "libvirt.uri", conf: map[string]any{"libvirt": map[string]any{"source": "uri", "uri": ""}}},
		{key: "libvirt.pods_dir", conf: map[string]any{"libvirt": map[string]any{"pods_dir": ""}}},
		{key: "libvirt.pods_dir", conf: map[string]any{"libvirt": map[string]any{"pods_dir": "pods"}}},
		{key: "libvirt.pods_dir", conf: map[string]any{"libvirt": map[string]any{"pods_dir": "/var/lib/kubelet/pods"}}},
		{key: "libvirt.timeout", conf: map[string]any{"libvirt": map[string]any{"timeout": "0s"}}},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			conf := map[string]any{"node_name": "worker-node-1"}
			for k, v := range tt.conf {
				conf[k] = v
			}
			cfg := createDefaultConfig()
			require.NoError(t, confmap.NewFromStringMap(conf).Unmarshal(cfg))
			err := confmap.Validate(cfg)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.key+":")
		})
	}
}

func TestUnknownKeyIsRejected(t *testing.T) {
	cfg := createDefaultConfig()
	err := confmap.NewFromStringMap(map[string]any{"node_name": "n", "libvirt": map[string]any{"url": "x"}}).Unmarshal(cfg)
	require.ErrorContains(t, err, "url")
}
