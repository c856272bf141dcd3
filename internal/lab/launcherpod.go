package lab

import (
	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
)

// Labels KubeVirt puts on a VMI's virt-launcher pods.
const (
	launcherLabel  = "kubevirt.io"            // = "virt-launcher"
	createdByLabel = "kubevirt.io/created-by" // = the VMI's UID
	vmNameLabel    = "vm.kubevirt.io/name"    // = the VMI's name
)

// EmulationAnnotation on a VMI, "true", makes the lab run it without /dev/kvm, under
// TCG: what KubeVirt's cluster-wide useEmulation does, per VMI, so that one node can
// show both kinds.
const EmulationAnnotation = "lab.otelcol-kubevirt.io/use-emulation"

// launcherUser is the uid and gid of KubeVirt's non-root launchers (the qemu user);
// VMIs report it as status.runtimeUser.
const launcherUser = 107

// Where the launcher keeps what its readiness probe reads, in its private emptyDir.
const (
	privateDir    = "/var/run/kubevirt-private"
	healthyMarker = privateDir + "/healthy"
)

// launcherPod is the virt-launcher pod KubeVirt would make for v, reduced to what the
// collector sees: non-root (uid 107), libvirt's runtime in the libvirt-runtime
// emptyDir at /var/run/libvirt, /dev/kvm through KVMResource unless emulated, one
// container "compute" running the guest <namespace>_<name>, owned by the VMI so that
// deleting the VMI deletes the pod.
//
// One difference: libvirt-runtime is memory-backed here, where KubeVirt's is on disk.
// That makes it a mount of its own, made when the pod starts, which a collector
// started earlier sees only through HostToContainer mount propagation: the lab's
// tests then prove the DaemonSet's propagation setting, which a plain directory would
// not need.
func launcherPod(v *unstructured.Unstructured, image string, kvm bool) *corev1.Pod {
	limits := corev1.ResourceList{}
	if kvm {
		limits[KVMResource] = resource.MustParse("1")
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: "virt-launcher-" + v.GetName() + "-",
			Namespace:    v.GetNamespace(),
			Labels: map[string]string{
				launcherLabel:  "virt-launcher",
				createdByLabel: string(v.GetUID()),
				vmNameLabel:    v.GetName(),
			},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion:         testenv.VMIResource.GroupVersion().String(),
				Kind:               "VirtualMachineInstance",
				Name:               v.GetName(),
				UID:                v.GetUID(),
				Controller:         ptr.To(true),
				BlockOwnerDeletion: ptr.To(true),
			}},
		},
		Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyNever,
			TerminationGracePeriodSeconds: ptr.To[int64](10),
			AutomountServiceAccountToken:  ptr.To(false),
			SecurityContext: &corev1.PodSecurityContext{
				RunAsUser:    ptr.To[int64](launcherUser),
				RunAsGroup:   ptr.To[int64](launcherUser),
				FSGroup:      ptr.To[int64](launcherUser),
				RunAsNonRoot: ptr.To(true),
			},
			Containers: []corev1.Container{{
				Name:            "compute",
				Image:           image,
				ImagePullPolicy: corev1.PullIfNotPresent,
				Args:            []string{v.GetNamespace(), v.GetName()},
				Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{
						corev1.ResourceCPU:    resource.MustParse("10m"),
						corev1.ResourceMemory: resource.MustParse("128Mi"),
					},
					Limits: limits,
				},
				SecurityContext: &corev1.SecurityContext{
					AllowPrivilegeEscalation: ptr.To(false),
					Capabilities: &corev1.Capabilities{
						Drop: []corev1.Capability{"ALL"},
						Add:  []corev1.Capability{"NET_BIND_SERVICE"},
					},
				},
				VolumeMounts: []corev1.VolumeMount{
					{Name: "libvirt-runtime", MountPath: "/var/run/libvirt"},
					{Name: "private", MountPath: privateDir},
				},
				ReadinessProbe: &corev1.Probe{
					ProbeHandler: corev1.ProbeHandler{
						Exec: &corev1.ExecAction{Command: []string{"cat", healthyMarker}},
					},
					PeriodSeconds:    1,
					FailureThreshold: 1,
				},
			}},
			Volumes: []corev1.Volume{
				{Name: "libvirt-runtime", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}},
				{Name: "private", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
			},
		},
	}
}
