package helmchart

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"
)

// renderValues renders the chart with a values file holding values.
func renderValues(t *testing.T, values string) []*unstructured.Unstructured {
	t.Helper()
	f := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(f, []byte(values), 0o644); err != nil {
		t.Fatal(err)
	}
	return decode(t, helmTemplate(t, "--values", f))
}

func daemonSet(t *testing.T, objs []*unstructured.Unstructured) *appsv1.DaemonSet {
	t.Helper()
	var ds appsv1.DaemonSet
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(object(t, objs, "DaemonSet", release).Object, &ds); err != nil {
		t.Fatal(err)
	}
	if n := len(ds.Spec.Template.Spec.Containers); n != 1 {
		t.Fatalf("%d containers, want 1", n)
	}
	return &ds
}

// collectorConfig parses the configuration file the ConfigMap holds.
func collectorConfig(t *testing.T, objs []*unstructured.Unstructured) map[string]any {
	t.Helper()
	var cfg map[string]any
	if err := yaml.Unmarshal([]byte(field(t, object(t, objs, "ConfigMap", release), "data", "config.yaml").(string)), &cfg); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestPodValues: each value users set for the pod lands where Kubernetes reads it.
func TestPodValues(t *testing.T) {
	objs := renderValues(t, `
image: {repository: registry.example.com/otelcol-kubevirt, tag: v1.2.3, pullPolicy: Always}
imagePullSecrets: [{name: regcred}]
resources: {requests: {cpu: 50m, memory: 100Mi}, limits: {cpu: "1", memory: 1Gi}}
goMemLimit: 800MiB
kubeletPodsDir: /var/lib/k0s/kubelet/pods
nodeSelector: {kubevirt.io/schedulable: "true"}
tolerations: [{key: CriticalAddonsOnly, operator: Exists}]
affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchExpressions: [{key: kubevirt.io/schedulable, operator: In, values: ["true"]}]}]}}}
priorityClassName: system-node-critical
podAnnotations: {example.com/team: virt}
podLabels: {example.com/tier: monitoring}
extraEnv: [{name: KUBEVIRT_AUTH_TYPE, value: serviceAccount}]
seLinuxOptions: {type: spc_t}
`)
	ds := daemonSet(t, objs)
	pod := ds.Spec.Template.Spec
	c := pod.Containers[0]
	check := func(what string, got, want any) {
		t.Helper()
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", what, diff)
		}
	}
	check("image", c.Image, "registry.example.com/otelcol-kubevirt:v1.2.3")
	check("imagePullPolicy", c.ImagePullPolicy, corev1.PullAlways)
	check("imagePullSecrets", pod.ImagePullSecrets, []corev1.LocalObjectReference{{Name: "regcred"}})
	check("resources", c.Resources.Limits.Memory().String()+" "+c.Resources.Requests.Cpu().String(), "1Gi 50m")
	check("env", c.Env[1:], []corev1.EnvVar{{Name: "GOMEMLIMIT", Value: "800MiB"}, {Name: "KUBEVIRT_AUTH_TYPE", Value: "serviceAccount"}})
	// Helm merges a map value with the default one: kubernetes.io/os stays.
	check("nodeSelector", pod.NodeSelector, map[string]string{"kubernetes.io/os": "linux", "kubevirt.io/schedulable": "true"})
	check("tolerations", pod.Tolerations, []corev1.Toleration{{Key: "CriticalAddonsOnly", Operator: corev1.TolerationOpExists}})
	check("affinity", pod.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[0].MatchExpressions[0].Key, "kubevirt.io/schedulable")
	check("priorityClassName", pod.PriorityClassName, "system-node-critical")
	check("seLinuxOptions", c.SecurityContext.SELinuxOptions, &corev1.SELinuxOptions{Type: "spc_t"})
	check("capabilities beside seLinuxOptions", c.SecurityContext.Capabilities.Add, []corev1.Capability{"DAC_OVERRIDE"})
	check("pod annotation", ds.Spec.Template.Annotations["example.com/team"], "virt")
	check("pod label", ds.Spec.Template.Labels["example.com/tier"], "monitoring")
	for _, v := range pod.Volumes {
		if v.Name == "kubelet-pods" {
			check("kubelet pods hostPath", v.HostPath.Path, "/var/lib/k0s/kubelet/pods")
		}
	}
	// Selectors do not take podLabels: they could not change on upgrade.
	check("selector", ds.Spec.Selector.MatchLabels, map[string]string{"app.kubernetes.io/name": "otelcol-kubevirt", "app.kubernetes.io/instance": release})

	// With the default values the container has no SELinux options: kustomize's
	// DaemonSet has none either.
	if got := daemonSet(t, renderValues(t, "{}")).Spec.Template.Spec.Containers[0].SecurityContext.SELinuxOptions; got != nil {
		t.Errorf("default seLinuxOptions rendered %+v, want none", got)
	}

	// And without goMemLimit the variable is not set.
	c = daemonSet(t, renderValues(t, "goMemLimit: \"\"\n")).Spec.Template.Spec.Containers[0]
	if slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "GOMEMLIMIT" }) {
		t.Errorf("goMemLimit empty, env still has GOMEMLIMIT: %v", c.Env)
	}
}

// TestServiceAccountAndRBACValues: without the chart's service account the pod runs
// as the named one, which the ClusterRoleBinding binds; rbac.create=false renders no
// RBAC at all.
func TestServiceAccountAndRBACValues(t *testing.T) {
	objs := renderValues(t, "serviceAccount: {create: false, name: collector}\n")
	if _, ok := byKey(t, objs)["ServiceAccount/"+release]; ok {
		t.Errorf("serviceAccount.create=false rendered a ServiceAccount")
	}
	if got := daemonSet(t, objs).Spec.Template.Spec.ServiceAccountName; got != "collector" {
		t.Errorf("serviceAccountName = %q, want collector", got)
	}
	subjects := field(t, object(t, objs, "ClusterRoleBinding", release), "subjects").([]any)
	if got := sprint(subjects); got != "[map[kind:ServiceAccount name:collector namespace:otelcol-kubevirt]]" {
		t.Errorf("ClusterRoleBinding subjects = %s", got)
	}

	for _, o := range renderValues(t, "rbac: {create: false}\n") {
		if o.GetKind() == "ClusterRole" || o.GetKind() == "ClusterRoleBinding" {
			t.Errorf("rbac.create=false rendered %s", key(o))
		}
	}
}

// TestConfigValuesMergeOverShippedConfig: `config` adds to and overrides the shipped
// configuration key by key, and a changed configuration changes the pods' checksum,
// which rolls them.
func TestConfigValuesMergeOverShippedConfig(t *testing.T) {
	shipped := collectorConfig(t, renderValues(t, "{}"))
	objs := renderValues(t, `
config:
  receivers:
    kubevirt:
      collection_interval: 1m
  exporters:
    otlp_grpc:
      endpoint: otel-gateway.observability:4317
  service:
    pipelines:
      metrics/otlp:
        receivers: [kubevirt]
        exporters: [otlp_grpc]
`)
	got := collectorConfig(t, objs)
	want := shipped
	kubevirt := want["receivers"].(map[string]any)["kubevirt"].(map[string]any)
	kubevirt["collection_interval"] = "1m"
	want["exporters"].(map[string]any)["otlp_grpc"] = map[string]any{"endpoint": "otel-gateway.observability:4317"}
	want["service"].(map[string]any)["pipelines"].(map[string]any)["metrics/otlp"] = map[string]any{
		"receivers": []any{"kubevirt"}, "exporters": []any{"otlp_grpc"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("merged configuration (-want +got):\n%s", diff)
	}
	if kubevirt["node_name"] != "${env:K8S_NODE_NAME}" {
		t.Errorf("the shipped receiver settings were lost: %v", kubevirt)
	}

	sum := func(objs []*unstructured.Unstructured) string {
		return daemonSet(t, objs).Spec.Template.Annotations["checksum/config"]
	}
	if a, b := sum(renderValues(t, "{}")), sum(objs); a == "" || a == b {
		t.Errorf("checksum/config %q with the shipped configuration, %q with another", a, b)
	}
}

// TestProbes: on the health_check extension when the configuration runs it (the
// shipped one does), else readiness on the Prometheus endpoint; none when disabled.
func TestProbes(t *testing.T) {
	c := daemonSet(t, renderValues(t, `
config:
  service: {extensions: []}
`)).Spec.Template.Spec.Containers[0]
	if c.LivenessProbe != nil || c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/metrics" || c.ReadinessProbe.HTTPGet.Port.String() != "metrics" {
		t.Errorf("configuration without health_check: liveness %+v, readiness %+v; want readiness on metrics /metrics only", c.LivenessProbe, c.ReadinessProbe)
	}

	c = daemonSet(t, renderValues(t, `
probes: {liveness: {periodSeconds: 5}}
`)).Spec.Template.Spec.Containers[0]
	if !slices.Contains(c.Ports, corev1.ContainerPort{Name: "health", ContainerPort: 13133, Protocol: corev1.ProtocolTCP}) {
		t.Errorf("ports %+v, want health 13133", c.Ports)
	}
	for name, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/" || p.HTTPGet.Port.String() != "health" {
			t.Errorf("%s probe %+v, want GET / on port health", name, p)
		}
	}
	if c.LivenessProbe != nil && c.LivenessProbe.PeriodSeconds != 5 {
		t.Errorf("probes.liveness.periodSeconds not applied: %+v", c.LivenessProbe)
	}

	c = daemonSet(t, renderValues(t, "probes: {enabled: false}\n")).Spec.Template.Spec.Containers[0]
	if c.LivenessProbe != nil || c.ReadinessProbe != nil {
		t.Errorf("probes.enabled=false, probes %+v %+v", c.LivenessProbe, c.ReadinessProbe)
	}
}

// TestMonitoringObjects: the ServiceMonitor selects the chart's Service and the
// PodMonitor its pods, both keeping the series' own labels; the PrometheusRule
// carries deploy/prometheus's rule groups unchanged.
func TestMonitoringObjects(t *testing.T) {
	for _, o := range renderValues(t, "{}") {
		if o.GetAPIVersion() == "monitoring.coreos.com/v1" {
			t.Errorf("rendered %s by default", key(o))
		}
	}
	objs := renderValues(t, `
serviceMonitor: {enabled: true, interval: 30s, labels: {release: prom}}
podMonitor: {enabled: true, scrapeTimeout: 10s}
prometheusRule: {enabled: true, labels: {release: prom}}
`)
	svcLabels := field(t, object(t, objs, "Service", release), "metadata", "labels").(map[string]any)
	sm := object(t, objs, "ServiceMonitor", release)
	for k, v := range field(t, sm, "spec", "selector", "matchLabels").(map[string]any) {
		if svcLabels[k] != v {
			t.Errorf("ServiceMonitor selects %s=%v, the Service has %v", k, v, svcLabels)
		}
	}
	if got := sprint(field(t, sm, "spec", "endpoints")); got != "[map[honorLabels:true interval:30s path:/metrics port:metrics]]" {
		t.Errorf("ServiceMonitor endpoints %s", got)
	}
	if got := sm.GetLabels()["release"]; got != "prom" {
		t.Errorf("ServiceMonitor label release = %q, want prom", got)
	}
	podLabels := daemonSet(t, objs).Spec.Template.Labels
	pm := object(t, objs, "PodMonitor", release)
	for k, v := range field(t, pm, "spec", "selector", "matchLabels").(map[string]any) {
		if podLabels[k] != v {
			t.Errorf("PodMonitor selects %s=%v, the pods have %v", k, v, podLabels)
		}
	}
	if got := sprint(field(t, pm, "spec", "podMetricsEndpoints")); got != "[map[honorLabels:true path:/metrics port:metrics scrapeTimeout:10s]]" {
		t.Errorf("PodMonitor endpoints %s", got)
	}

	var rules struct {
		Groups []any `json:"groups"`
	}
	data, err := os.ReadFile(filepath.Join(repoRoot, "deploy/prometheus/kubevirt-hypervisor-rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &rules); err != nil || len(rules.Groups) == 0 {
		t.Fatalf("deploy/prometheus/kubevirt-hypervisor-rules.yaml: %d groups, %v", len(rules.Groups), err)
	}
	if diff := cmp.Diff(rules.Groups, field(t, object(t, objs, "PrometheusRule", release), "spec", "groups")); diff != "" {
		t.Errorf("PrometheusRule groups differ from deploy/prometheus's (-want +got):\n%s", diff)
	}
}
