package helmchart

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv"
)

// monitoringCRDs returns the CRD files of the kinds the chart renders: ServiceMonitor,
// PodMonitor, PrometheusRule, of the Prometheus Operator release tools/crds/go.mod pins.
func monitoringCRDs(t *testing.T) []string {
	t.Helper()
	dir, err := testenv.PinnedModuleDir("tools/crds", "github.com/prometheus-operator/prometheus-operator")
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, kind := range []string{"servicemonitors", "podmonitors", "prometheusrules"} {
		files = append(files, filepath.Join(dir, "example", "prometheus-operator-crd", "monitoring.coreos.com_"+kind+".yaml"))
	}
	return files
}

// everyValue sets every value the chart has, for the dry run to validate what each
// renders.
const everyValue = `
image: {repository: registry.example.com/otelcol-kubevirt, tag: v1.2.3, pullPolicy: Always}
imagePullSecrets: [{name: regcred}]
serviceAccount: {annotations: {example.com/owner: virt}}
config:
  extensions: {health_check: {endpoint: 0.0.0.0:13133}}
  service: {extensions: [health_check]}
extraEnv: [{name: KUBEVIRT_AUTH_TYPE, value: serviceAccount}]
resources: {requests: {cpu: 50m, memory: 100Mi}, limits: {cpu: "1", memory: 1Gi}}
goMemLimit: 800MiB
kubeletPodsDir: /var/lib/k0s/kubelet/pods
tolerations: [{key: CriticalAddonsOnly, operator: Exists}]
affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchExpressions: [{key: kubevirt.io/schedulable, operator: In, values: ["true"]}]}]}}}
priorityClassName: system-node-critical
seLinuxOptions: {type: spc_t}
podAnnotations: {example.com/team: virt}
podLabels: {example.com/tier: monitoring}
probes: {liveness: {periodSeconds: 5, failureThreshold: 3}, readiness: {periodSeconds: 5}}
serviceMonitor: {enabled: true, labels: {release: prom}, interval: 30s, scrapeTimeout: 10s,
  relabelings: [{action: replace, sourceLabels: [__meta_kubernetes_pod_node_name], targetLabel: host}],
  metricRelabelings: [{action: keep, sourceLabels: [__name__], regex: kubevirt_.*}]}
podMonitor: {enabled: true, labels: {release: prom}, interval: 30s, scrapeTimeout: 10s,
  relabelings: [{action: replace, sourceLabels: [__meta_kubernetes_pod_node_name], targetLabel: host}],
  metricRelabelings: [{action: keep, sourceLabels: [__name__], regex: kubevirt_.*}]}
prometheusRule: {enabled: true, labels: {release: prom}}
`

// TestChartServerSideDryRun applies the chart's objects, as `helm template` renders
// them, to a real kube-apiserver with server-side dry run and strict field
// validation: with default values, with the monitors and rules on (the Prometheus
// Operator's CRDs installed), and with every value set. No error and no warning
// may come back.
func TestChartServerSideDryRun(t *testing.T) {
	helmBin(t)
	kubectl := kubectlBin(t)
	crds := monitoringCRDs(t)
	api := testenv.MustStartAPIServer(t)
	k := func(stdin []byte, args ...string) (stdout, stderr []byte, err error) {
		t.Helper()
		return runErr(t, stdin, kubectl, append([]string{"--kubeconfig", api.KubeconfigPath}, args...)...)
	}
	must := func(args ...string) {
		t.Helper()
		if _, stderr, err := k(nil, args...); err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, stderr)
		}
	}
	// As the README has users do: the release's namespace, allowing the hostPath.
	must("create", "namespace", namespace)
	must("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=privileged")
	args := []string{"apply", "--server-side", "--field-manager", "otelcol-kubevirt-helm-test"}
	for _, f := range crds {
		args = append(args, "-f", f)
	}
	must(args...)
	must("wait", "--for", "condition=Established", "--timeout", "60s",
		"crd/servicemonitors.monitoring.coreos.com", "crd/podmonitors.monitoring.coreos.com", "crd/prometheusrules.monitoring.coreos.com")

	values := filepath.Join(t.TempDir(), "every-value.yaml")
	if err := os.WriteFile(values, []byte(everyValue), 0o644); err != nil {
		t.Fatal(err)
	}
	dryRun := func(t *testing.T, ns string, args ...string) (stdout, stderr []byte, err error) {
		t.Helper()
		rendered := run(t, nil, helmBin(t), append([]string{"template", release, chartDir, "--namespace", ns}, args...)...)
		return k(rendered, "apply", "--server-side", "--dry-run=server", "--validate=strict",
			"--field-manager", "otelcol-kubevirt-helm-test", "-f", "-")
	}
	for name, args := range map[string][]string{
		"Defaults":         nil,
		"MonitorsAndRules": {"--set", "serviceMonitor.enabled=true,podMonitor.enabled=true,prometheusRule.enabled=true"},
		"EveryValue":       {"--values", values},
	} {
		t.Run(name, func(t *testing.T) {
			stdout, stderr, err := dryRun(t, namespace, args...)
			if err != nil || len(stderr) > 0 {
				t.Fatalf("server-side dry run: %v\n%s%s", err, stderr, stdout)
			}
			objs := decode(t, run(t, nil, helmBin(t), append([]string{"template", release, chartDir, "--namespace", namespace}, args...)...))
			for _, o := range objs {
				want := strings.ToLower(o.GroupVersionKind().GroupKind().String()) + "/" + o.GetName() + " serverside-applied (server dry run)"
				if !strings.Contains(string(stdout), want) {
					t.Errorf("kubectl did not report %q:\n%s", want, stdout)
				}
			}
		})
	}
	// Dry run stored nothing.
	if out, _, err := k(nil, "get", "daemonset", "--namespace", namespace, "--output", "name"); err != nil || len(out) > 0 {
		t.Errorf("after dry runs: DaemonSets %q (%v), want none", out, err)
	}

	// The checks above can fail. Strict field validation refuses a field Kubernetes
	// does not know, as a misspelt value renders it...
	t.Run("UnknownFieldsAreRefused", func(t *testing.T) {
		_, stderr, err := dryRun(t, namespace, "--set", "probes.readiness.periodSecond=5")
		if err == nil || !strings.Contains(string(stderr), "readinessProbe.periodSecond: field not declared in schema") {
			t.Errorf("dry run with probes.readiness.periodSecond: %v, stderr %q; want an unknown field error", err, stderr)
		}
	})
	// ...and warnings are seen: a namespace that warns below "privileged" gives one.
	t.Run("WarningsAreSeen", func(t *testing.T) {
		must("create", "namespace", "warns-baseline")
		must("label", "namespace", "warns-baseline", "pod-security.kubernetes.io/warn=baseline")
		_, stderr, err := dryRun(t, "warns-baseline")
		if err != nil || !strings.Contains(string(stderr), "would violate PodSecurity") {
			t.Errorf("dry run into a namespace warning at baseline: %v, stderr %q; want a PodSecurity warning", err, stderr)
		}
	})
}
