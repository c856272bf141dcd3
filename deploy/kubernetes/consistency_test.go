package manifests

import (
	"fmt"
	"net"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/yaml"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver"
)

// typed converts the manifest of kind into out.
func typed(t *testing.T, ms []manifest, kind string, out any) {
	t.Helper()
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(find(t, ms, kind).Object, out); err != nil {
		t.Fatalf("%s: %v", kind, err)
	}
}

func TestClusterRoleReadsVMIsOnly(t *testing.T) {
	ms := loadManifests(t)
	var role rbacv1.ClusterRole
	typed(t, ms, "ClusterRole", &role)
	want := []rbacv1.PolicyRule{{
		APIGroups: []string{"kubevirt.io"},
		Resources: []string{"virtualmachineinstances"},
		Verbs:     []string{"get", "list", "watch"},
	}}
	if fmt.Sprint(role.Rules) != fmt.Sprint(want) {
		t.Errorf("ClusterRole rules = %+v, want %+v", role.Rules, want)
	}
	var binding rbacv1.ClusterRoleBinding
	typed(t, ms, "ClusterRoleBinding", &binding)
	var sa corev1.ServiceAccount
	typed(t, ms, "ServiceAccount", &sa)
	wantSubject := rbacv1.Subject{Kind: "ServiceAccount", Name: sa.Name, Namespace: sa.Namespace}
	if binding.RoleRef.Kind != "ClusterRole" || binding.RoleRef.Name != role.Name ||
		len(binding.Subjects) != 1 || binding.Subjects[0] != wantSubject {
		t.Errorf("ClusterRoleBinding = %+v %+v, want ClusterRole %s for %+v", binding.RoleRef, binding.Subjects, role.Name, wantSubject)
	}
}

// TestDaemonSet checks the DaemonSet's promises: the kubelet pods directory at
// /pods with HostToContainer propagation, the node name from the downward API, a
// narrow securityContext, requests and limits, the service account.
func TestDaemonSet(t *testing.T) {
	ms := loadManifests(t)
	var ds appsv1.DaemonSet
	typed(t, ms, "DaemonSet", &ds)
	var sa corev1.ServiceAccount
	typed(t, ms, "ServiceAccount", &sa)
	pod := ds.Spec.Template.Spec
	if pod.ServiceAccountName != sa.Name {
		t.Errorf("serviceAccountName = %q, want %q", pod.ServiceAccountName, sa.Name)
	}
	if pod.HostNetwork || pod.HostPID || pod.HostIPC {
		t.Errorf("the pod uses host namespaces")
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]

	// /pods
	mount := volumeMount(t, c, "/pods")
	vol := volume(t, pod, mount.Name)
	if vol.HostPath == nil || vol.HostPath.Path != "/var/lib/kubelet/pods" {
		t.Errorf("/pods is %+v, want hostPath /var/lib/kubelet/pods", vol.VolumeSource)
	}
	if mount.MountPropagation == nil || *mount.MountPropagation != corev1.MountPropagationHostToContainer {
		t.Errorf("/pods mountPropagation = %v, want HostToContainer", mount.MountPropagation)
	}
	if !mount.ReadOnly {
		t.Errorf("/pods is mounted read-write")
	}

	// Node name from the downward API.
	nodeName := env(c, "K8S_NODE_NAME")
	if nodeName == nil || nodeName.ValueFrom == nil || nodeName.ValueFrom.FieldRef == nil || nodeName.ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
		t.Errorf("K8S_NODE_NAME = %+v, want the downward API's spec.nodeName", nodeName)
	}

	// Resources.
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, lim := c.Resources.Requests[r], c.Resources.Limits[r]
		if req.IsZero() || lim.IsZero() || req.Cmp(lim) > 0 {
			t.Errorf("%s: request %v, limit %v; want both, request <= limit", r, req.String(), lim.String())
		}
	}

	// securityContext: root for DAC_OVERRIDE, nothing more.
	sc := c.SecurityContext
	if sc == nil || sc.Capabilities == nil {
		t.Fatalf("no securityContext with capabilities")
	}
	if !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || !slices.Equal(sc.Capabilities.Add, []corev1.Capability{"DAC_OVERRIDE"}) {
		t.Errorf("capabilities = %+v, want drop [ALL] add [DAC_OVERRIDE]", sc.Capabilities)
	}
	if sc.RunAsUser == nil || *sc.RunAsUser != 0 {
		t.Errorf("runAsUser = %v, want 0 (see the comment in daemonset.yaml)", sc.RunAsUser)
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Errorf("privileged")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("allowPrivilegeEscalation must be false")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("readOnlyRootFilesystem must be true")
	}
	if pod.SecurityContext == nil || pod.SecurityContext.SeccompProfile == nil || pod.SecurityContext.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("seccompProfile must be RuntimeDefault")
	}
	if sel, labels := ds.Spec.Selector.MatchLabels, ds.Spec.Template.Labels; len(sel) == 0 || !subset(sel, labels) {
		t.Errorf("selector %v does not match the template's labels %v", sel, labels)
	}
}

// TestDaemonSetRunsTheConfigMap checks the DaemonSet against the config it runs: the
// file it passes is the ConfigMap's, every ${env:X} without a default is set,
// pods_dir is the /pods mount and short enough, the Prometheus port is the one the
// container and the Service expose, the probes ask the health_check extension, and
// GOMEMLIMIT follows the memory limit.
func TestDaemonSetRunsTheConfigMap(t *testing.T) {
	ms := loadManifests(t)
	var ds appsv1.DaemonSet
	typed(t, ms, "DaemonSet", &ds)
	var cm corev1.ConfigMap
	typed(t, ms, "ConfigMap", &cm)
	var svc corev1.Service
	typed(t, ms, "Service", &svc)
	pod := ds.Spec.Template.Spec
	c := pod.Containers[0]

	// --config=<mount of the ConfigMap>/<key>
	var cfgMount *corev1.VolumeMount
	for i, m := range c.VolumeMounts {
		if v := volume(t, pod, m.Name); v.ConfigMap != nil && v.ConfigMap.Name == cm.Name {
			cfgMount = &c.VolumeMounts[i]
		}
	}
	if cfgMount == nil {
		t.Fatalf("the ConfigMap %s is not mounted", cm.Name)
	}
	wantArg := "--config=" + path.Join(cfgMount.MountPath, configKey)
	if !slices.Contains(c.Args, wantArg) {
		t.Errorf("args = %v, want %s", c.Args, wantArg)
	}

	// The config as the collector would see it in this container.
	expanded, err := expandEnv(cm.Data[configKey], c)
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Receivers struct {
			Kubevirt struct {
				NodeName string `json:"node_name"`
				AuthType string `json:"auth_type"`
				Libvirt  struct {
					Source  string `json:"source"`
					PodsDir string `json:"pods_dir"`
				} `json:"libvirt"`
			} `json:"kubevirt"`
		} `json:"receivers"`
		Exporters struct {
			Prometheus struct {
				Endpoint string `json:"endpoint"`
			} `json:"prometheus"`
		} `json:"exporters"`
		Extensions struct {
			HealthCheck struct {
				Endpoint string `json:"endpoint"`
			} `json:"health_check"`
		} `json:"extensions"`
	}
	if err := yaml.Unmarshal([]byte(expanded), &cfg); err != nil {
		t.Fatal(err)
	}
	kv := cfg.Receivers.Kubevirt
	if kv.NodeName != "<spec.nodeName>" || kv.AuthType != "serviceAccount" || kv.Libvirt.Source != "launcher" {
		t.Errorf("receiver: node_name %q, auth_type %q, libvirt.source %q; want <spec.nodeName>, serviceAccount, launcher",
			kv.NodeName, kv.AuthType, kv.Libvirt.Source)
	}
	podsDir := kv.Libvirt.PodsDir
	if podsDir == "" {
		podsDir = "/pods" // the receiver's default
	}
	volumeMount(t, c, podsDir) // fails the test if nothing is mounted there
	// The receiver's own validation, as the collector runs it at startup (a pods
	// dir too long for launcher sockets is refused there).
	rcfg := kubevirtreceiver.NewFactory().CreateDefaultConfig().(*kubevirtreceiver.Config)
	rcfg.NodeName = "node"
	rcfg.Libvirt.PodsDir = podsDir
	if err := rcfg.Validate(); err != nil {
		t.Error(err)
	}

	_, port, err := net.SplitHostPort(cfg.Exporters.Prometheus.Endpoint)
	if err != nil {
		t.Fatalf("prometheus endpoint %q: %v", cfg.Exporters.Prometheus.Endpoint, err)
	}
	var containerPort *corev1.ContainerPort
	for i, p := range c.Ports {
		if strconv.Itoa(int(p.ContainerPort)) == port {
			containerPort = &c.Ports[i]
		}
	}
	if containerPort == nil {
		t.Fatalf("the container does not expose the Prometheus port %s (ports %+v)", port, c.Ports)
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].TargetPort.String() != containerPort.Name ||
		strconv.Itoa(int(svc.Spec.Ports[0].Port)) != port {
		t.Errorf("Service ports %+v, want port %s targeting %q", svc.Spec.Ports, port, containerPort.Name)
	}
	// Both probes ask the health_check extension, on a port the container declares.
	_, healthPort, err := net.SplitHostPort(cfg.Extensions.HealthCheck.Endpoint)
	if err != nil {
		t.Fatalf("health_check endpoint %q: %v", cfg.Extensions.HealthCheck.Endpoint, err)
	}
	for name, probe := range map[string]*corev1.Probe{"livenessProbe": c.LivenessProbe, "readinessProbe": c.ReadinessProbe} {
		if probe == nil || probe.HTTPGet == nil {
			t.Errorf("%s: want an HTTP GET of the health_check extension", name)
			continue
		}
		var p *corev1.ContainerPort
		for i := range c.Ports {
			if c.Ports[i].Name == probe.HTTPGet.Port.String() {
				p = &c.Ports[i]
			}
		}
		if p == nil || strconv.Itoa(int(p.ContainerPort)) != healthPort || probe.HTTPGet.Path != "/" {
			t.Errorf("%s asks %s on port %s; want / on the health_check port %s", name, probe.HTTPGet.Path, probe.HTTPGet.Port.String(), healthPort)
		}
	}
	if !subset(svc.Spec.Selector, ds.Spec.Template.Labels) || len(svc.Spec.Selector) == 0 {
		t.Errorf("Service selector %v does not select the DaemonSet's pods %v", svc.Spec.Selector, ds.Spec.Template.Labels)
	}

	// GOMEMLIMIT: 70-90% of the memory limit, in MiB.
	limit := c.Resources.Limits[corev1.ResourceMemory]
	goMemLimit := env(c, "GOMEMLIMIT")
	if goMemLimit == nil {
		t.Fatal("no GOMEMLIMIT")
	}
	mib, err := strconv.ParseInt(strings.TrimSuffix(goMemLimit.Value, "MiB"), 10, 64)
	if err != nil || !strings.HasSuffix(goMemLimit.Value, "MiB") {
		t.Fatalf("GOMEMLIMIT = %q, want <n>MiB", goMemLimit.Value)
	}
	if share := float64(mib<<20) / float64(limit.Value()); share < 0.7 || share > 0.9 {
		t.Errorf("GOMEMLIMIT is %d MiB, %.0f%% of the %s memory limit; want 70-90%%", mib, 100*share, limit.String())
	}
}

// envRef is the collector's ${env:NAME} and ${env:NAME:-default}.
var envRef = regexp.MustCompile(`\$\{env:([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}`)

// expandEnv expands config's environment references with the container's env as
// the collector would: a literal value, "<fieldPath>" for the downward API, else the
// default. A reference without a default the container does not set is an error.
func expandEnv(config string, c corev1.Container) (string, error) {
	var err error
	out := envRef.ReplaceAllStringFunc(config, func(ref string) string {
		m := envRef.FindStringSubmatch(ref)
		if e := env(c, m[1]); e != nil {
			if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
				return "<" + e.ValueFrom.FieldRef.FieldPath + ">"
			}
			return e.Value
		}
		if m[2] == "" {
			err = fmt.Errorf("the config needs $%s, which the DaemonSet does not set", m[1])
		}
		return m[3]
	})
	return out, err
}

func env(c corev1.Container, name string) *corev1.EnvVar {
	for i := range c.Env {
		if c.Env[i].Name == name {
			return &c.Env[i]
		}
	}
	return nil
}

func volumeMount(t *testing.T, c corev1.Container, mountPath string) corev1.VolumeMount {
	t.Helper()
	for _, m := range c.VolumeMounts {
		if m.MountPath == mountPath {
			return m
		}
	}
	t.Fatalf("nothing mounted at %s", mountPath)
	return corev1.VolumeMount{}
}

func volume(t *testing.T, pod corev1.PodSpec, name string) corev1.Volume {
	t.Helper()
	for _, v := range pod.Volumes {
		if v.Name == name {
			return v
		}
	}
	t.Fatalf("no volume %s", name)
	return corev1.Volume{}
}

// subset reports whether every key of a has the same value in b.
func subset(a, b map[string]string) bool {
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
