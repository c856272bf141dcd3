package helmchart

import (
	"maps"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// The differences between the chart's default rendering and deploy/kubernetes that
// are there on purpose; anything else fails TestChartRendersDeployKubernetes.
var (
	// helmLabels are the labels the chart adds to every object, and the selectors'
	// app.kubernetes.io/instance, which keeps two releases from selecting each
	// other's pods. deploy/kubernetes has app.kubernetes.io/name only.
	helmLabels = []string{"app.kubernetes.io/instance", "app.kubernetes.io/version", "app.kubernetes.io/managed-by", "helm.sh/chart"}
	// podAnnotations are the chart's own annotations on the DaemonSet's pods: the
	// configuration's checksum, which rolls the pods when a value changes it.
	podAnnotations = []string{"checksum/config"}
	// onlyKustomize are deploy/kubernetes's objects the chart does not render: Helm
	// installs into the release's namespace, which the user creates (README).
	onlyKustomize = []string{"Namespace/otelcol-kubevirt"}
)

// TestChartRendersDeployKubernetes holds the chart and deploy/kubernetes to one
// deployment: `helm template` with default values must give the objects of
// `kubectl kustomize deploy/kubernetes`, field for field, but for the differences
// listed above. A change to either that the other does not mirror fails here.
func TestChartRendersDeployKubernetes(t *testing.T) {
	kustomized := byKey(t, decode(t, run(t, nil, kubectlBin(t), "kustomize", repoRoot+"/deploy/kubernetes")))
	rendered := byKey(t, decode(t, helmTemplate(t)))
	for _, k := range onlyKustomize {
		if _, ok := kustomized[k]; !ok {
			t.Errorf("deploy/kubernetes no longer has %s: update onlyKustomize", k)
		}
		delete(kustomized, k)
	}
	if got, want := slices.Sorted(maps.Keys(rendered)), slices.Sorted(maps.Keys(kustomized)); !slices.Equal(got, want) {
		t.Fatalf("the chart renders %v, deploy/kubernetes has %v", got, want)
	}
	for k, want := range kustomized {
		got := rendered[k].DeepCopy()
		for _, l := range helmLabels {
			if !removeKeyEverywhere(got.Object, l) {
				t.Errorf("%s has no %s label", k, l)
			}
		}
		if k == "DaemonSet/otelcol-kubevirt" {
			removeAnnotations(t, got, podAnnotations, "spec", "template", "metadata")
		}
		if diff := cmp.Diff(want.Object, got.Object); diff != "" {
			t.Errorf("%s: the chart (+) differs from deploy/kubernetes (-):\n%s", k, diff)
		}
	}
}

// removeKeyEverywhere deletes key from every map in v, at any depth, and says
// whether it found one.
func removeKeyEverywhere(v any, key string) bool {
	found := false
	switch v := v.(type) {
	case map[string]any:
		if _, ok := v[key]; ok {
			delete(v, key)
			found = true
		}
		for _, e := range v {
			found = removeKeyEverywhere(e, key) || found
		}
	case []any:
		for _, e := range v {
			found = removeKeyEverywhere(e, key) || found
		}
	}
	return found
}

// removeAnnotations deletes the named annotations of the metadata at path, which
// must have each, and the annotations map once empty.
func removeAnnotations(t *testing.T, o *unstructured.Unstructured, names []string, path ...string) {
	t.Helper()
	annotations, _, _ := unstructured.NestedStringMap(o.Object, append(path, "annotations")...)
	for _, n := range names {
		if _, ok := annotations[n]; !ok {
			t.Errorf("%s has no %s annotation at %v", key(o), n, path)
		}
		delete(annotations, n)
	}
	if len(annotations) == 0 {
		unstructured.RemoveNestedField(o.Object, append(path, "annotations")...)
		return
	}
	if err := unstructured.SetNestedStringMap(o.Object, annotations, append(path, "annotations")...); err != nil {
		t.Fatal(err)
	}
}
