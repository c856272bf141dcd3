package operator

import (
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/runtime"
)

// collectorSpec is the part of an OpenTelemetryCollector's spec (opentelemetry.io
// v1beta1) that the example sets. The field names are the CRD's; the API server test
// proves that the server accepts them as they are.
type collectorSpec struct {
	Mode               string                      `json:"mode"`
	Image              string                      `json:"image"`
	ImagePullPolicy    corev1.PullPolicy           `json:"imagePullPolicy"`
	ServiceAccount     string                      `json:"serviceAccount"`
	NodeSelector       map[string]string           `json:"nodeSelector"`
	Tolerations        []corev1.Toleration         `json:"tolerations"`
	PodSecurityContext *corev1.PodSecurityContext  `json:"podSecurityContext"`
	SecurityContext    *corev1.SecurityContext     `json:"securityContext"`
	Env                []corev1.EnvVar             `json:"env"`
	Resources          corev1.ResourceRequirements `json:"resources"`
	Ports              []collectorPort             `json:"ports"`
	VolumeMounts       []corev1.VolumeMount        `json:"volumeMounts"`
	Volumes            []corev1.Volume             `json:"volumes"`
	Config             map[string]any              `json:"config"`
}

type collectorPort struct {
	Name     string          `json:"name"`
	Port     int32           `json:"port"`
	Protocol corev1.Protocol `json:"protocol"`
}

func loadCollector(t *testing.T) collectorSpec {
	t.Helper()
	var spec collectorSpec
	obj := find(t, loadFile(t, collectorFile), "OpenTelemetryCollector")
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object["spec"].(map[string]any), &spec); err != nil {
		t.Fatalf("%s: %v", collectorFile, err)
	}
	return spec
}

func loadDaemonSet(t *testing.T) appsv1.DaemonSet {
	t.Helper()
	var ds appsv1.DaemonSet
	obj := find(t, loadFile(t, filepath.Join(kubernetesDir, "daemonset.yaml")), "DaemonSet")
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, &ds); err != nil {
		t.Fatal(err)
	}
	return ds
}

// TestCollectorIsTheDaemonSet: what deploy/kubernetes/daemonset.yaml gives the
// collector's pod and container (and explains), the OpenTelemetryCollector gives too,
// field for field; only the config volume differs, since the Operator makes its own.
func TestCollectorIsTheDaemonSet(t *testing.T) {
	spec := loadCollector(t)
	ds := loadDaemonSet(t)
	pod := ds.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("the DaemonSet has %d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]

	if spec.Mode != "daemonset" {
		t.Errorf("mode = %q, want daemonset", spec.Mode)
	}
	same := func(what string, want, got any) {
		t.Helper()
		if !equality.Semantic.DeepEqual(want, got) {
			t.Errorf("%s differs from the DaemonSet's (-DaemonSet +OpenTelemetryCollector):\n%s", what, cmp.Diff(want, got))
		}
	}
	same("image", c.Image, spec.Image)
	same("imagePullPolicy", c.ImagePullPolicy, spec.ImagePullPolicy)
	same("serviceAccount", pod.ServiceAccountName, spec.ServiceAccount)
	same("nodeSelector", pod.NodeSelector, spec.NodeSelector)
	same("tolerations", pod.Tolerations, spec.Tolerations)
	same("podSecurityContext", pod.SecurityContext, spec.PodSecurityContext)
	same("securityContext", c.SecurityContext, spec.SecurityContext)
	same("env", c.Env, spec.Env)
	same("resources", c.Resources, spec.Resources)

	// Every volume but the ConfigMap's, mounted the same way.
	configVolumes := map[string]bool{}
	var volumes []corev1.Volume
	for _, v := range pod.Volumes {
		if v.ConfigMap != nil {
			configVolumes[v.Name] = true
			continue
		}
		volumes = append(volumes, v)
	}
	var mounts []corev1.VolumeMount
	for _, m := range c.VolumeMounts {
		if !configVolumes[m.Name] {
			mounts = append(mounts, m)
		}
	}
	if len(volumes) == 0 || len(mounts) == 0 {
		t.Fatalf("the DaemonSet has no volume besides its config: volumes %+v, mounts %+v", pod.Volumes, c.VolumeMounts)
	}
	same("volumes (but the config)", volumes, spec.Volumes)
	same("volumeMounts (but the config)", mounts, spec.VolumeMounts)

	// Every port of the DaemonSet's container, under the same name.
	for _, p := range c.Ports {
		proto := p.Protocol
		if proto == "" {
			proto = corev1.ProtocolTCP
		}
		if !containsPort(spec.Ports, collectorPort{Name: p.Name, Port: p.ContainerPort, Protocol: proto}) {
			t.Errorf("the DaemonSet's port %s %d/%s is not in the OpenTelemetryCollector's %+v", p.Name, p.ContainerPort, proto, spec.Ports)
		}
	}
}

func containsPort(ports []collectorPort, want collectorPort) bool {
	for _, p := range ports {
		if p.Protocol == "" {
			p.Protocol = corev1.ProtocolTCP
		}
		if p == want {
			return true
		}
	}
	return false
}

func portNamed(ports []collectorPort, name string) (collectorPort, bool) {
	for _, p := range ports {
		if p.Name == name {
			return p, true
		}
	}
	return collectorPort{}, false
}
