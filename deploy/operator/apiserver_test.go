package operator

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv"
)

const (
	fieldManager = "otelcol-kubevirt-operator-test"
	// collectorCRDFile is where the Operator's source keeps the CRD it installs.
	collectorCRDFile = "config/crd/bases/opentelemetry.io_opentelemetrycollectors.yaml"
	collectorCRDName = "opentelemetrycollectors.opentelemetry.io"
)

var collectorResource = schema.GroupVersionResource{Group: "opentelemetry.io", Version: "v1beta1", Resource: "opentelemetrycollectors"}

// operatorCRD returns the OpenTelemetryCollector CRD file of the Operator release
// tools/crds/go.mod pins, from the module cache.
func operatorCRD(t *testing.T) string {
	t.Helper()
	dir, err := testenv.PinnedModuleDir("tools/crds", operatorModule)
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, collectorCRDFile)
}

// kubectl is the kubectl of the Kubernetes assets the API server comes from.
func kubectl(t *testing.T) string {
	t.Helper()
	dir, err := testenv.KubeAssetsDir()
	if err != nil {
		testenv.Unavailable(t, "%v", err)
	}
	bin := filepath.Join(dir, "kubectl")
	if _, err := os.Stat(bin); err != nil {
		testenv.Unavailable(t, "no kubectl in %s: %v; run `make kube-assets`", dir, err)
	}
	return bin
}

// render returns what `kubectl apply -k dir` would apply.
func render(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	out, err := exec.Command(kubectl(t), "kustomize", dir).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("kubectl kustomize %s: %v: %s", dir, err, ee.Stderr)
		}
		t.Fatalf("kubectl kustomize %s: %v", dir, err)
	}
	objs, err := decodeAll("kubectl kustomize "+dir, out)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func findKind(t *testing.T, objs []*unstructured.Unstructured, kind string) *unstructured.Unstructured {
	t.Helper()
	wrapped := make([]object, 0, len(objs))
	for _, o := range objs {
		wrapped = append(wrapped, object{obj: o})
	}
	return find(t, wrapped, kind)
}

// TestOperatorCRDAdmitsTheCollector installs the Operator's OpenTelemetryCollector CRD
// into a real kube-apiserver and applies what `kubectl apply -k deploy/operator` would,
// with server-side dry run and strict field validation: the server checks the
// collector against the CRD's schema and CEL rules. Broken variants must be refused,
// and the ServiceAccount the collector runs as must be able to read VMIs, and only that.
func TestOperatorCRDAdmitsTheCollector(t *testing.T) {
	api := testenv.MustStartAPIServer(t)
	crdFile := operatorCRD(t)
	crds, err := envtest.InstallCRDs(api.Config, envtest.CRDInstallOptions{
		Paths:              []string{crdFile},
		ErrorIfPathMissing: true,
		MaxTime:            time.Minute,
	})
	if err != nil {
		t.Fatalf("installing %s: %v", crdFile, err)
	}
	if len(crds) != 1 || crds[0].Name != collectorCRDName {
		t.Fatalf("installed %d CRDs from %s, want exactly %s", len(crds), crdFile, collectorCRDName)
	}
	t.Logf("the Operator's CRD: %s", crdFile)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var warned testenv.Warnings
	cfg := rest.CopyConfig(api.Config)
	cfg.WarningHandler = &warned
	a, err := testenv.NewApplier(cfg, fieldManager)
	if err != nil {
		t.Fatal(err)
	}
	objs := render(t, ".")

	// Namespaced objects are only admitted into an existing namespace, and a dry-run
	// namespace does not exist afterwards: create it for real first.
	if _, err := a.Apply(ctx, findKind(t, objs, "Namespace"), false); err != nil {
		t.Fatalf("creating the namespace: %v", err)
	}

	t.Run("admitted", func(t *testing.T) {
		for _, obj := range objs {
			got, err := a.Apply(ctx, obj, true)
			if err != nil {
				t.Errorf("%s %s: dry run: %v", obj.GetKind(), obj.GetName(), err)
				continue
			}
			if obj.GetKind() != "OpenTelemetryCollector" {
				continue
			}
			// Nothing was pruned or changed: everything sent is in what the server
			// would store (which may add defaults of its own).
			if where := missingFrom(obj.Object["spec"], got.Object["spec"], "spec"); where != "" {
				t.Errorf("the server would store the OpenTelemetryCollector without what was sent at %s", where)
			}
		}
		if msgs := warned.Messages(); len(msgs) > 0 {
			t.Errorf("the API server warned: %q", msgs)
		}
	})

	t.Run("refused", func(t *testing.T) {
		collector := findKind(t, objs, "OpenTelemetryCollector")
		for _, c := range brokenCollectors {
			obj := collector.DeepCopy()
			c.edit(obj.Object)
			_, err := a.Apply(ctx, obj, true)
			switch code := statusCode(err); {
			case err == nil:
				t.Errorf("%s: admitted, want refused", c.name)
			case !slices.Contains(c.codes, code):
				t.Errorf("%s: %v (code %d); want the request refused with code %v", c.name, err, code, c.codes)
			case !strings.Contains(err.Error(), c.want):
				t.Errorf("%s: refused with %q, want it to say %q", c.name, err, c.want)
			default:
				t.Logf("%s: refused: %v", c.name, err)
			}
		}
	})

	t.Run("rbac", func(t *testing.T) {
		checkRBAC(ctx, t, api, a, objs)
	})
}

// brokenCollectors are the example with one mistake each, and what the API server
// must say about it: the schema's enum, required fields and strict decoding, and a
// CEL rule of the CRD.
var brokenCollectors = []struct {
	name  string
	edit  func(obj map[string]any)
	want  string
	codes []int32
}{{
	name:  "mode misspelt",
	edit:  func(obj map[string]any) { spec(obj)["mode"] = "daemonSet" },
	want:  `spec.mode: Unsupported value: "daemonSet"`,
	codes: invalid,
}, {
	name: "unknown field",
	edit: func(obj map[string]any) { spec(obj)["volumeMount"] = spec(obj)["volumeMounts"] },
	want: `.spec.volumeMount: field not declared in schema`,
	// Server-side apply refuses a field the schema lacks before strict validation
	// sees it, and Kubernetes 1.36 says so with a 500 (kubernetes/kubernetes#139253,
	// open); a fix would make it 400.
	codes: []int32{http.StatusInternalServerError, http.StatusBadRequest},
}, {
	name: "sidecar with tolerations (a CEL rule of the CRD)",
	edit: func(obj map[string]any) {
		spec(obj)["mode"] = "sidecar"
		spec(obj)["tolerations"] = []any{map[string]any{"operator": "Exists"}}
	},
	want:  "which does not support the attribute 'tolerations'",
	codes: invalid,
}, {
	name: "pipeline without receivers",
	edit: func(obj map[string]any) {
		m, _ := nested(spec(obj), "config", "service", "pipelines", "metrics")
		delete(m.(map[string]any), "receivers")
	},
	want:  "spec.config.service.pipelines.metrics.receivers: Required value",
	codes: invalid,
}, {
	name: "hostPath without path",
	edit: func(obj map[string]any) {
		v := spec(obj)["volumes"].([]any)[0].(map[string]any)
		delete(v["hostPath"].(map[string]any), "path")
	},
	want:  "spec.volumes[0].hostPath.path: Required value",
	codes: invalid,
}}

// invalid is the code of a schema or CEL violation: 422 Unprocessable Entity.
var invalid = []int32{http.StatusUnprocessableEntity}

func statusCode(err error) int32 {
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		return status.Status().Code
	}
	return 0
}

func spec(obj map[string]any) map[string]any { return obj["spec"].(map[string]any) }

// missingFrom returns the path of the first thing in sent that got lacks or holds
// differently, or "" when got has all of sent. Lists must match element by element.
func missingFrom(sent, got any, path string) string {
	switch s := sent.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return path
		}
		for k, v := range s {
			if where := missingFrom(v, g[k], path+"."+k); where != "" {
				return where
			}
		}
		return ""
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(s) {
			return path
		}
		for i := range s {
			if where := missingFrom(s[i], g[i], fmt.Sprintf("%s[%d]", path, i)); where != "" {
				return where
			}
		}
		return ""
	default:
		if !reflect.DeepEqual(sent, got) {
			return fmt.Sprintf("%s (sent %v, got %v)", path, sent, got)
		}
		return ""
	}
}

// checkRBAC applies the ServiceAccount and its RBAC for real and acts as the account
// the OpenTelemetryCollector names: it lists, watches and gets VMIs as the receiver
// does, and may do nothing else it is asked to try.
func checkRBAC(ctx context.Context, t *testing.T, api *testenv.APIServer, a *testenv.Applier, objs []*unstructured.Unstructured) {
	t.Helper()
	for _, kind := range []string{"ServiceAccount", "ClusterRole", "ClusterRoleBinding"} {
		if _, err := a.Apply(ctx, findKind(t, objs, kind), false); err != nil {
			t.Fatalf("applying %s: %v", kind, err)
		}
	}
	sa := findKind(t, objs, "ServiceAccount")
	collector := findKind(t, objs, "OpenTelemetryCollector")
	if name, _ := spec(collector.Object)["serviceAccount"].(string); name != sa.GetName() || collector.GetNamespace() != sa.GetNamespace() {
		t.Fatalf("the collector runs as %s/%s, the ServiceAccount is %s/%s",
			collector.GetNamespace(), name, sa.GetNamespace(), sa.GetName())
	}
	testenv.CheckVMIReader(ctx, t, api, sa.GetNamespace(), sa.GetName())
	// Nor may it read the Operator's own resources.
	dyn, err := dynamic.NewForConfig(testenv.ServiceAccountConfig(api.Config, sa.GetNamespace(), sa.GetName()))
	if err != nil {
		t.Fatal(err)
	}
	_, err = dyn.Resource(collectorResource).Namespace(namespace).List(ctx, metav1.ListOptions{})
	if !apierrors.IsForbidden(err) {
		t.Errorf("list OpenTelemetryCollectors as the service account: err = %v, want forbidden", err)
	}
}
