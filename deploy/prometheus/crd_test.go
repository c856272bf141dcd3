package alertrules

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv"
)

// The Prometheus Operator's PrometheusRule CRD, as its release module ships it. The
// test reads it from the Go module cache, so no copy lives here; tools/crds/go.mod pins
// the release and go.sum its hash.
const (
	promOperatorModule = "github.com/prometheus-operator/prometheus-operator"
	prometheusRuleCRD  = "example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml"
)

var prometheusRules = schema.GroupVersionResource{Group: "monitoring.coreos.com", Version: "v1", Resource: "prometheusrules"}

// prometheusRuleCRDPath returns the PrometheusRule CRD of the Prometheus Operator
// release tools/crds/go.mod pins, from the module cache.
func prometheusRuleCRDPath(t *testing.T) string {
	t.Helper()
	dir, err := testenv.PinnedModuleDir("tools/crds", promOperatorModule)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, prometheusRuleCRD)
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the module no longer ships the CRD: %v", err)
	}
	return path
}

// TestPrometheusRuleAgainstTheCRD installs the Prometheus Operator's PrometheusRule
// CRD into a real kube-apiserver and applies prometheusrule.yaml server-side with
// strict field validation: first as a dry run, then for real, reading it back whole.
// The schema's own checks are shown to bite on broken copies: a `for` that is no
// duration, a field a rule does not have.
func TestPrometheusRuleAgainstTheCRD(t *testing.T) {
	testenv.RequireDaemons(t, "etcd and kube-apiserver")
	crd := prometheusRuleCRDPath(t)
	api := testenv.MustStartAPIServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := envtest.InstallCRDs(api.Config, envtest.CRDInstallOptions{Paths: []string{crd}, ErrorIfPathMissing: true}); err != nil {
		t.Fatalf("installing %s: %v", crd, err)
	}

	data, err := os.ReadFile(prometheusRuleFile)
	if err != nil {
		t.Fatal(err)
	}
	obj := &unstructured.Unstructured{}
	if err := yaml.Unmarshal(data, &obj.Object); err != nil {
		t.Fatal(err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: obj.GetNamespace()}}
	if _, err := api.Clientset.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var warned testenv.Warnings
	cfg := rest.CopyConfig(api.Config)
	cfg.WarningHandler = &warned
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rules := dyn.Resource(prometheusRules).Namespace(obj.GetNamespace())
	apply := func(o *unstructured.Unstructured, dryRun bool) (*unstructured.Unstructured, error) {
		body, err := json.Marshal(o.Object)
		if err != nil {
			return nil, err
		}
		opts := metav1.PatchOptions{FieldManager: "otelcol-kubevirt-rules-test", FieldValidation: metav1.FieldValidationStrict}
		if dryRun {
			opts.DryRun = []string{metav1.DryRunAll}
		}
		return rules.Patch(ctx, o.GetName(), types.ApplyPatchType, body, opts)
	}

	if _, err := apply(obj, true); err != nil {
		t.Fatalf("dry run of %s: %v", prometheusRuleFile, err)
	}
	if _, err := apply(obj, false); err != nil {
		t.Fatalf("applying %s: %v", prometheusRuleFile, err)
	}
	stored, err := rules.Get(ctx, obj.GetName(), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(stored.Object["spec"], obj.Object["spec"]) {
		t.Errorf("the API server stored a different spec than %s holds (pruned or defaulted)", prometheusRuleFile)
	}

	for name, breakIt := range map[string]func(rule map[string]any){
		"for: ten minutes": func(r map[string]any) { r["for"] = "ten minutes" },
		"a rule's unknown field": func(r map[string]any) {
			r["severity"] = "critical" // belongs under labels
		},
	} {
		broken := obj.DeepCopy()
		// NestedSlice returns a copy: break it, then put it back.
		groups, _, err := unstructured.NestedSlice(broken.Object, "spec", "groups")
		if err != nil || len(groups) == 0 {
			t.Fatalf("%s has no spec.groups: %v", prometheusRuleFile, err)
		}
		breakIt(groups[0].(map[string]any)["rules"].([]any)[0].(map[string]any))
		if err := unstructured.SetNestedSlice(broken.Object, groups, "spec", "groups"); err != nil {
			t.Fatal(err)
		}
		if _, err := apply(broken, true); err == nil {
			t.Errorf("the API server accepted a PrometheusRule with %s", name)
		} else {
			t.Logf("%s refused, as it should be: %v", name, err)
		}
	}

	if msgs := warned.Messages(); len(msgs) > 0 {
		t.Errorf("the API server warned: %q", msgs)
	}
}
