// Package manifests holds only tests: they check the Kubernetes manifests in this
// directory against each other, against the shipped collector config, and against a
// real kube-apiserver.
package manifests

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
)

// manifest is one object of one file.
type manifest struct {
	file string
	obj  *unstructured.Unstructured
}

// kustomization is the part of kustomization.yaml the tests read.
type kustomization struct {
	Resources []string `json:"resources"`
}

// loadManifests returns every object of the files kustomization.yaml lists, in
// that order.
func loadManifests(t *testing.T) []manifest {
	t.Helper()
	var k kustomization
	readYAML(t, "kustomization.yaml", &k)
	var out []manifest
	for _, file := range k.Resources {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
		for {
			var obj map[string]any
			err := dec.Decode(&obj)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			if obj == nil {
				continue // an empty document
			}
			out = append(out, manifest{file: file, obj: &unstructured.Unstructured{Object: obj}})
		}
	}
	return out
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

// TestKustomizationListsEveryManifest: `kubectl apply -k` must not miss a file.
func TestKustomizationListsEveryManifest(t *testing.T) {
	var k kustomization
	readYAML(t, "kustomization.yaml", &k)
	files, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	files = slices.DeleteFunc(files, func(f string) bool { return f == "kustomization.yaml" })
	listed := slices.Sorted(slices.Values(k.Resources))
	if !slices.Equal(files, listed) {
		t.Errorf("kustomization.yaml lists %v, the directory has %v", listed, files)
	}
}

// TestManifestKinds: exactly the objects the deployment needs, each once.
func TestManifestKinds(t *testing.T) {
	var kinds []string
	for _, m := range loadManifests(t) {
		kinds = append(kinds, m.obj.GetKind()+"/"+m.obj.GetName())
		if ns := m.obj.GetNamespace(); ns != "" && ns != namespace {
			t.Errorf("%s %s is in namespace %q, want %q", m.obj.GetKind(), m.obj.GetName(), ns, namespace)
		}
	}
	slices.Sort(kinds)
	want := []string{
		"ClusterRole/otelcol-kubevirt", "ClusterRoleBinding/otelcol-kubevirt", "ConfigMap/otelcol-kubevirt",
		"DaemonSet/otelcol-kubevirt", "Namespace/otelcol-kubevirt", "Service/otelcol-kubevirt",
		"ServiceAccount/otelcol-kubevirt",
	}
	if !slices.Equal(kinds, want) {
		t.Errorf("objects = %v, want %v", kinds, want)
	}
}

const namespace = "otelcol-kubevirt"

// find returns the one object of kind, failing the test if there is none.
func find(t *testing.T, ms []manifest, kind string) *unstructured.Unstructured {
	t.Helper()
	for _, m := range ms {
		if m.obj.GetKind() == kind {
			return m.obj
		}
	}
	t.Fatalf("no %s in the manifests", kind)
	return nil
}
