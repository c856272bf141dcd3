package manifests

import (
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/yaml"
)

var update = flag.Bool("update", false, "rewrite configmap.yaml from cmd/otelcol-kubevirt/config.yaml")

const (
	shippedConfigPath = "../../cmd/otelcol-kubevirt/config.yaml"
	configMapFile     = "configmap.yaml"
	// configKey is the ConfigMap key, and so the file name under the mount.
	configKey = "config.yaml"
)

// configMapHeader precedes the indented config in configmap.yaml.
const configMapHeader = `# Generated from cmd/otelcol-kubevirt/config.yaml (with libvirt.source: launcher) by
#   go test ./deploy/kubernetes -run TestConfigMapIsShippedConfig -update
# Do not edit by hand; a test fails when the two differ.
apiVersion: v1
kind: ConfigMap
metadata:
  name: otelcol-kubevirt
  namespace: otelcol-kubevirt
  labels:
    app.kubernetes.io/name: otelcol-kubevirt
data:
  ` + configKey + `: |
`

// uriSource matches a literal `source: uri` line of the receiver's libvirt block.
var uriSource = regexp.MustCompile(`(?m)^(\s+source:[ \t]*)uri[ \t]*$`)

// deployedConfig is the configuration the DaemonSet runs: the shipped one, reading
// each VMI's domain from its launcher. Once the shipped config defaults to the
// launcher source itself this changes nothing.
func deployedConfig(shipped string) string {
	return uriSource.ReplaceAllString(shipped, "${1}launcher")
}

// renderConfigMap returns configmap.yaml for config.
func renderConfigMap(config string) string {
	var b strings.Builder
	b.WriteString(configMapHeader)
	for _, line := range strings.SplitAfter(config, "\n") {
		switch line {
		case "":
		case "\n":
			b.WriteString(line) // blank lines inside a block scalar need no indent
		default:
			b.WriteString("    " + line)
		}
	}
	return b.String()
}

func readShippedConfig(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(shippedConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(string(b), "\n") || strings.HasSuffix(string(b), "\n\n") {
		t.Fatalf("%s must end in exactly one newline to survive a YAML block scalar", shippedConfigPath)
	}
	return string(b)
}

// TestConfigMapIsShippedConfig keeps the ConfigMap from drifting from the config the
// distribution ships: configmap.yaml must be exactly what -update writes.
func TestConfigMapIsShippedConfig(t *testing.T) {
	want := deployedConfig(readShippedConfig(t))
	if !strings.Contains(want, "source: launcher") && !strings.Contains(want, ":-launcher}") {
		t.Fatalf("the deployed config does not select libvirt.source launcher:\n%s", want)
	}
	rendered := renderConfigMap(want)
	if *update {
		if err := os.WriteFile(configMapFile, []byte(rendered), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(configMapFile)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != rendered {
		t.Errorf("%s is out of date with %s; run: go test ./deploy/kubernetes -run TestConfigMapIsShippedConfig -update",
			filepath.Join("deploy/kubernetes", configMapFile), "cmd/otelcol-kubevirt/config.yaml")
	}
	// And YAML reads back the very same config.
	var cm corev1.ConfigMap
	if err := yaml.Unmarshal(got, &cm); err != nil {
		t.Fatal(err)
	}
	if cm.Data[configKey] != want {
		t.Errorf("ConfigMap data %q differs from the deployed config:\n--- ConfigMap:\n%s\n--- want:\n%s", configKey, cm.Data[configKey], want)
	}
}

func TestDeployedConfig(t *testing.T) {
	shipped := "receivers:\n  kubevirt:\n    libvirt:\n      source: uri\n      uri: ${env:LIBVIRT_URI:-qemu:///system}\n"
	want := "receivers:\n  kubevirt:\n    libvirt:\n      source: launcher\n      uri: ${env:LIBVIRT_URI:-qemu:///system}\n"
	if got := deployedConfig(shipped); got != want {
		t.Errorf("deployedConfig = %q, want %q", got, want)
	}
	already := "    libvirt:\n      source: ${env:LIBVIRT_SOURCE:-launcher}\n"
	if got := deployedConfig(already); got != already {
		t.Errorf("deployedConfig changed a launcher config: %q", got)
	}
}
