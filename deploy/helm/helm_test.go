// Package helmchart holds only tests: they lint the chart in otelcol-kubevirt/, render
// it and compare it with deploy/kubernetes, keep its copies of the shipped files
// current, and apply it to a real kube-apiserver. The real-node test of both install
// paths is deploy/kubernetes's node_test.go.
package helmchart

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv"
)

const (
	repoRoot = "../.."
	chartDir = "otelcol-kubevirt"
	// release and namespace are what the README's install command uses: with them
	// the chart names everything as deploy/kubernetes does.
	release   = "otelcol-kubevirt"
	namespace = "otelcol-kubevirt"
)

// helmBin is the Helm that hack/helm-assets.sh built (HELM_ASSETS, set by
// hack/with-assets.sh).
func helmBin(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("HELM_ASSETS")
	if dir == "" {
		testenv.Unavailable(t, "HELM_ASSETS is not set: `make test` builds Helm (hack/helm-assets.sh) and names it")
	}
	bin := filepath.Join(dir, "helm")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("HELM_ASSETS=%s: %v", dir, err)
	}
	return bin
}

// kubectlBin is the kubectl of KUBEBUILDER_ASSETS (hack/kube-assets.sh).
func kubectlBin(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	if dir == "" {
		testenv.Unavailable(t, "KUBEBUILDER_ASSETS is not set: `make test` builds kubectl (hack/kube-assets.sh) and names it")
	}
	return filepath.Join(dir, "kubectl")
}

// run runs a command and returns its standard output; a failure carries its
// standard error.
func run(t *testing.T, stdin []byte, name string, args ...string) []byte {
	t.Helper()
	out, stderr, err := runErr(t, stdin, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, stderr)
	}
	return out
}

func runErr(t *testing.T, stdin []byte, name string, args ...string) (stdout, stderr []byte, err error) {
	t.Helper()
	cmd := exec.Command(name, args...)
	// Helm keeps a cache, configuration and repositories under $HOME; a test's own
	// keep it from reading or writing the user's.
	home := t.TempDir()
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"))
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.Bytes(), e.Bytes(), err
}

// helmTemplate renders the chart as `helm install otelcol-kubevirt` into namespace
// otelcol-kubevirt would, with extra arguments (--set, -f).
func helmTemplate(t *testing.T, args ...string) []byte {
	t.Helper()
	return run(t, nil, helmBin(t), append([]string{"template", release, chartDir, "--namespace", namespace}, args...)...)
}

// decode splits a multi-document YAML stream into objects, skipping empty documents.
func decode(t *testing.T, data []byte) []*unstructured.Unstructured {
	t.Helper()
	dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out []*unstructured.Unstructured
	for {
		var obj map[string]any
		err := dec.Decode(&obj)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("decoding rendered objects: %v\n%s", err, data)
		}
		if obj != nil {
			out = append(out, &unstructured.Unstructured{Object: obj})
		}
	}
}

// key names an object as kind/name.
func key(o *unstructured.Unstructured) string { return o.GetKind() + "/" + o.GetName() }

// byKey indexes objects by kind/name, failing on a duplicate.
func byKey(t *testing.T, objs []*unstructured.Unstructured) map[string]*unstructured.Unstructured {
	t.Helper()
	m := map[string]*unstructured.Unstructured{}
	for _, o := range objs {
		if _, dup := m[key(o)]; dup {
			t.Fatalf("%s rendered twice", key(o))
		}
		m[key(o)] = o
	}
	return m
}

// object returns the rendered object kind/name, failing the test if there is none.
func object(t *testing.T, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	if o, ok := byKey(t, objs)[kind+"/"+name]; ok {
		return o
	}
	var have []string
	for _, o := range objs {
		have = append(have, key(o))
	}
	t.Fatalf("no %s/%s rendered; have %v", kind, name, have)
	return nil
}

// field reads a nested field of o, failing the test if a step is missing.
func field(t *testing.T, o *unstructured.Unstructured, path ...string) any {
	t.Helper()
	v, ok, err := unstructured.NestedFieldNoCopy(o.Object, path...)
	if err != nil || !ok {
		t.Fatalf("%s has no %s (%v)", key(o), strings.Join(path, "."), err)
	}
	return v
}

func sprint(v any) string { return fmt.Sprintf("%v", v) }
