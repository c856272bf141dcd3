package kubevirtreceiver

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/confmap"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

// The README is the receiver's configuration reference; these tests keep it from
// drifting away from the code: its table lists exactly the keys the receiver has, with
// their defaults, its examples are valid configurations, and its RBAC is the one
// deploy/kubernetes ships.

// readmeKeyRow is a row of the README's configuration table: | `key` | default | meaning |
var readmeKeyRow = regexp.MustCompile("(?m)^\\| `([^`]+)` \\| ([^|]+) \\|")

// readmeYAML is a fenced YAML block of the README.
var readmeYAML = regexp.MustCompile("(?s)```yaml\n(.*?)```")

func readREADME(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("README.md")
	require.NoError(t, err)
	return string(b)
}

func TestREADMEListsEveryKeyWithItsDefault(t *testing.T) {
	documented := map[string]string{}
	for _, m := range readmeKeyRow.FindAllStringSubmatch(readREADME(t), -1) {
		documented[m[1]] = strings.TrimSpace(m[2])
	}
	require.NotEmpty(t, documented, "no configuration table found in README.md")

	conf := confmap.New()
	require.NoError(t, conf.Marshal(createDefaultConfig()))
	want := map[string]string{}
	for _, key := range conf.AllKeys() {
		switch {
		case strings.HasPrefix(key, "metrics::"):
			// One row stands for the generated switch of every metric.
			want["metrics::<metric>::enabled"] = "`true`"
		case strings.HasPrefix(key, "resource_attributes::"):
			want[key] = fmt.Sprintf("`%v`", conf.Get(key))
		default:
			want[strings.ReplaceAll(key, "::", ".")] = readmeDefault(conf.Get(key))
		}
	}
	want["node_name"] = "none, required"

	assert.Equal(t, want, documented, "README.md's configuration table (key and default columns) against createDefaultConfig")
}

// readmeDefault writes a default value the way the README's table does.
func readmeDefault(v any) string {
	if v == nil || v == "" {
		return "`\"\"`"
	}
	return fmt.Sprintf("`%v`", v)
}

func TestREADMEExamplesAreValid(t *testing.T) {
	var found int
	for _, m := range readmeYAML.FindAllStringSubmatch(readREADME(t), -1) {
		var doc map[string]any
		require.NoError(t, yaml.Unmarshal([]byte(m[1]), &doc), "README.md YAML block:\n%s", m[1])
		receivers, _ := doc["receivers"].(map[string]any)
		raw, ok := receivers["kubevirt"].(map[string]any)
		if !ok {
			continue
		}
		found++
		cfg := createDefaultConfig()
		require.NoError(t, confmap.NewFromStringMap(raw).Unmarshal(cfg), "README.md example:\n%s", m[1])
		assert.NoError(t, confmap.Validate(cfg), "README.md example:\n%s", m[1])
	}
	assert.GreaterOrEqual(t, found, 3, "README.md has a minimal, a shipped and an out-of-cluster example")
}

// documentedClusterRole is the ClusterRole README.md tells users to grant; the root
// module's deploy/kubernetes tests keep the shipped rbac.yaml equal to it.
func documentedClusterRole(t *testing.T) *rbacv1.ClusterRole {
	t.Helper()
	var documented *rbacv1.ClusterRole
	for _, m := range readmeYAML.FindAllStringSubmatch(readREADME(t), -1) {
		if strings.Contains(m[1], "kind: ClusterRole\n") {
			documented = &rbacv1.ClusterRole{}
			require.NoError(t, yaml.UnmarshalStrict([]byte(m[1]), documented))
		}
	}
	require.NotNil(t, documented, "no ClusterRole in README.md")
	return documented
}
