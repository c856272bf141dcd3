// Package operator holds only tests: they keep the OpenTelemetry Operator example in
// this directory equal, where it matters, to the DaemonSet of deploy/kubernetes and to
// the shipped collector config, and check it against the Operator's CRD in a real
// kube-apiserver.
package operator

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/apimachinery/pkg/util/yaml"
)

const (
	namespace     = "otelcol-kubevirt"
	kubernetesDir = "../kubernetes"
	collectorFile = "opentelemetrycollector.yaml"
)

// object is one document of one manifest file.
type object struct {
	file string
	obj  *unstructured.Unstructured
}

// kustomization is the part of a kustomization.yaml the tests read.
type kustomization struct {
	Resources      []string `json:"resources"`
	Configurations []string `json:"configurations"`
}

func readYAML(t *testing.T, file string, v any) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

// decodeAll returns every non-empty document of a YAML stream.
func decodeAll(name string, data []byte) ([]*unstructured.Unstructured, error) {
	dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out []*unstructured.Unstructured
	for {
		var obj map[string]any
		err := dec.Decode(&obj)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, errors.Join(errors.New(name), err)
		}
		if obj == nil {
			continue // an empty document
		}
		// Numbers as the API machinery decodes them (int64 for integers, as in what
		// the server returns), not as float64, so that the two compare equal.
		data, err := json.Marshal(obj)
		if err != nil {
			return nil, err
		}
		obj = nil
		if err := utiljson.Unmarshal(data, &obj); err != nil {
			return nil, err
		}
		out = append(out, &unstructured.Unstructured{Object: obj})
	}
}

// loadFile returns the objects of one manifest file.
func loadFile(t *testing.T, file string) []object {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeAll(file, data)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]object, 0, len(objs))
	for _, o := range objs {
		out = append(out, object{file: file, obj: o})
	}
	return out
}

// loadKustomization returns the objects of every file dir's kustomization.yaml lists.
func loadKustomization(t *testing.T, dir string) []object {
	t.Helper()
	var k kustomization
	readYAML(t, filepath.Join(dir, "kustomization.yaml"), &k)
	var out []object
	for _, f := range k.Resources {
		out = append(out, loadFile(t, filepath.Join(dir, f))...)
	}
	return out
}

// find returns the one object of kind, failing the test if there is none.
func find(t *testing.T, objs []object, kind string) *unstructured.Unstructured {
	t.Helper()
	var found *unstructured.Unstructured
	for _, o := range objs {
		if o.obj.GetKind() == kind {
			if found != nil {
				t.Fatalf("more than one %s", kind)
			}
			found = o.obj
		}
	}
	if found == nil {
		t.Fatalf("no %s", kind)
	}
	return found
}

// TestKustomizationListsEveryManifest: `kubectl apply -k` must not miss a file, and
// the kustomize configuration is not a resource.
func TestKustomizationListsEveryManifest(t *testing.T) {
	var k kustomization
	readYAML(t, "kustomization.yaml", &k)
	files, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	files = slices.DeleteFunc(files, func(f string) bool {
		return f == "kustomization.yaml" || slices.Contains(k.Configurations, f)
	})
	if listed := slices.Sorted(slices.Values(k.Resources)); !slices.Equal(files, listed) {
		t.Errorf("kustomization.yaml lists %v, the directory has %v", listed, files)
	}
}

// TestObjects: the collector and what it needs, each once, in the collector's namespace.
func TestObjects(t *testing.T) {
	var kinds []string
	for _, o := range loadKustomization(t, ".") {
		kinds = append(kinds, o.obj.GetKind()+"/"+o.obj.GetName())
		if ns := o.obj.GetNamespace(); ns != "" && ns != namespace {
			t.Errorf("%s %s is in namespace %q, want %q", o.obj.GetKind(), o.obj.GetName(), ns, namespace)
		}
	}
	slices.Sort(kinds)
	want := []string{
		"ClusterRole/otelcol-kubevirt", "ClusterRoleBinding/otelcol-kubevirt", "Namespace/otelcol-kubevirt",
		"OpenTelemetryCollector/otelcol-kubevirt", "ServiceAccount/otelcol-kubevirt",
	}
	if !slices.Equal(kinds, want) {
		t.Errorf("objects = %v, want %v", kinds, want)
	}
}

// TestNamespaceAndRBACAreTheDaemonSets: the Operator's collector runs in the same
// namespace, as the same ServiceAccount, with the same ClusterRole as the plain
// DaemonSet, so that the two deployments cannot drift apart in what they may do.
func TestNamespaceAndRBACAreTheDaemonSets(t *testing.T) {
	for _, file := range []string{"namespace.yaml", "rbac.yaml"} {
		ours := loadFile(t, file)
		theirs := loadFile(t, filepath.Join(kubernetesDir, file))
		if len(ours) != len(theirs) {
			t.Errorf("%s has %d objects, %s %d", file, len(ours), filepath.Join(kubernetesDir, file), len(theirs))
			continue
		}
		for i := range ours {
			if d := cmp.Diff(theirs[i].obj.Object, ours[i].obj.Object); d != "" {
				t.Errorf("%s: %s %s differs from deploy/kubernetes's (-theirs +ours):\n%s", file,
					ours[i].obj.GetKind(), ours[i].obj.GetName(), d)
			}
		}
	}
}
