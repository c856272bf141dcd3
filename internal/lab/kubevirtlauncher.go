package lab

import (
	"encoding/json"
	"fmt"
	"strconv"

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

// LauncherImage is the launcher pods' image `hack/images.sh lab` builds: KubeVirt's
// virt-launcher of the release tools/kubevirt/go.mod pins (a test holds the tag to
// that file).
const LauncherImage = "localhost/otelcol-kubevirt-lab/virt-launcher:v1.7.0"

// RootLauncherAnnotation on a VMI, "true", makes its launcher run as root, as
// KubeVirt's launchers do without the non-root default (status.runtimeUser 0):
// libvirt in system mode, the status file under qemu/ rather than qemu/run/.
const RootLauncherAnnotation = "lab.otelcol-kubevirt.io/root-launcher"

// Paths of a virt-launcher pod, as KubeVirt's virt-controller renders them
// (pkg/virt-controller/services and pkg/util of kubevirt.io/kubevirt).
const (
	privateDir       = "/var/run/kubevirt-private"
	shareDir         = "/var/run/kubevirt"
	ephemeralDiskDir = "/var/run/kubevirt-ephemeral-disks"
	containerDiskDir = shareDir + "/container-disks"
	hotplugDiskDir   = shareDir + "/hotplug-disks"
	libvirtRuntime   = "/var/run/libvirt"
)

// What KubeVirt's virt-controller passes to virt-launcher-monitor with its default
// configuration: --qemu-timeout 240s (without the jitter of up to 120s it adds),
// --grace-period-seconds the VMI's terminationGracePeriodSeconds (default 30) plus
// 15, --disk-memory-limit 2000 MiB, --ovmf-path /usr/share/OVMF.
const (
	qemuTimeout        = "240s"
	defaultGracePeriod = 30
	gracePeriodPadding = 15
	diskMemoryLimit    = 2000 * 1024 * 1024
	ovmfPath           = "/usr/share/OVMF"
)

// standaloneVMIEnv is the environment variable through which virt-launcher (since
// KubeVirt v1.7.0, pkg/virt-launcher/standalone) takes a VMI to define and start
// itself, with emulation allowed, where virt-handler would otherwise send it.
const standaloneVMIEnv = "STANDALONE_VMI"

// virtLauncherPod is the pod KubeVirt's virt-controller renders for v on a node
// without the Root feature gate (non-root, uid 107) or, with RootLauncherAnnotation,
// as root: the command, volumes, mounts, environment, security context, labels and
// annotations of pkg/virt-controller/services' renderLaunchManifest for a VMI with
// no disks, networks or sidecars; /dev/kvm through KVMResource unless kvm is false.
// v travels in STANDALONE_VMI, with the status.runtimeUser virt-api would have set,
// so that virt-launcher itself defines and starts the domain: its name, libvirt's
// mode, socket, runtime directory and the domain XML (kvm, or qemu without
// /dev/kvm) are KubeVirt's.
//
// What the lab does differently, and why:
//   - no virt-handler tells anyone the domain runs, so a readiness probe that the
//     domain's status file exists does (KubeVirt's pod has a readiness gate that
//     virt-handler sets instead); the controller reads Ready as Running, and Ready
//     lost as the guest having stopped;
//   - libvirt-runtime is memory-backed (KubeVirt's is on disk): a mount of its own,
//     made when the pod starts, which a collector started earlier sees only through
//     HostToContainer mount propagation, so the lab's tests prove the DaemonSet's
//     propagation setting;
//   - resource requests are the lab's small fixed ones, not guest memory plus
//     KubeVirt's overhead, so that many VMIs fit on one lab node;
//   - no readiness gate, node selector, tolerations or pod network.
func virtLauncherPod(v *unstructured.Unstructured, image string, kvm bool) (*corev1.Pod, error) {
	root := v.GetAnnotations()[RootLauncherAnnotation] == "true"
	user := int64(launcherUser)
	if root {
		user = 0
	}
	standalone, err := standaloneVMI(v, user, kvm)
	if err != nil {
		return nil, err
	}
	grace := int64(defaultGracePeriod)
	if g, ok, _ := unstructured.NestedInt64(v.Object, "spec", "terminationGracePeriodSeconds"); ok {
		grace = g
	}
	grace += gracePeriodPadding

	command := []string{"/usr/bin/virt-launcher-monitor",
		"--qemu-timeout", qemuTimeout,
		"--name", v.GetName(),
		"--uid", string(v.GetUID()),
		"--namespace", v.GetNamespace(),
		"--kubevirt-share-dir", shareDir,
		"--ephemeral-disk-dir", ephemeralDiskDir,
		"--container-disk-dir", containerDiskDir,
		"--grace-period-seconds", strconv.FormatInt(grace, 10),
		"--hook-sidecars", "0",
		"--ovmf-path", ovmfPath,
		"--disk-memory-limit", strconv.Itoa(diskMemoryLimit),
	}
	if !root {
		command = append(command, "--run-as-nonroot")
	}
	if !kvm {
		// What KubeVirt's useEmulation adds; here per VMI (EmulationAnnotation).
		command = append(command, "--allow-emulation")
	}

	env := []corev1.EnvVar{}
	if !root {
		// KubeVirt's XDG variables for non-root launchers: libvirt's session-mode
		// runtime directory is then /var/run/libvirt, the libvirt-runtime volume.
		env = append(env,
			corev1.EnvVar{Name: "XDG_CACHE_HOME", Value: privateDir},
			corev1.EnvVar{Name: "XDG_CONFIG_HOME", Value: privateDir},
			corev1.EnvVar{Name: "XDG_RUNTIME_DIR", Value: "/var/run"},
		)
	}
	env = append(env,
		corev1.EnvVar{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
		corev1.EnvVar{Name: standaloneVMIEnv, Value: standalone},
	)

	security := &corev1.SecurityContext{
		RunAsUser:    ptr.To(user),
		RunAsNonRoot: ptr.To(!root),
		Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_BIND_SERVICE"}},
	}
	podSecurity := &corev1.PodSecurityContext{RunAsUser: ptr.To(user), FSGroup: ptr.To[int64](launcherUser)}
	if root {
		// KubeVirt gives a root launcher CAP_SYS_NICE too, for CPU affinity.
		security.Capabilities.Add = append(security.Capabilities.Add, "SYS_NICE")
	} else {
		security.RunAsGroup = ptr.To(user)
		security.AllowPrivilegeEscalation = ptr.To(false)
		security.Capabilities.Drop = []corev1.Capability{"ALL"}
		podSecurity.RunAsGroup = ptr.To(user)
		podSecurity.RunAsNonRoot = ptr.To(true)
	}

	limits := corev1.ResourceList{}
	if kvm {
		limits[KVMResource] = resource.MustParse("1")
	}
	hostToContainer := ptr.To(corev1.MountPropagationHostToContainer)
	emptyDir := func(name string) corev1.Volume {
		return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}
	}
	runtime := emptyDir("libvirt-runtime")
	runtime.EmptyDir.Medium = corev1.StorageMediumMemory

	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: "virt-launcher-" + v.GetName() + "-",
			Namespace:    v.GetNamespace(),
			Labels: map[string]string{
				launcherLabel:  "virt-launcher",
				createdByLabel: string(v.GetUID()),
				vmNameLabel:    v.GetName(),
			},
			Annotations: map[string]string{
				"kubevirt.io/domain":                      v.GetName(),
				"kubectl.kubernetes.io/default-container": "compute",
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
			Hostname:                      v.GetName(),
			RestartPolicy:                 corev1.RestartPolicyNever,
			TerminationGracePeriodSeconds: ptr.To(grace + gracePeriodPadding),
			AutomountServiceAccountToken:  ptr.To(false),
			EnableServiceLinks:            ptr.To(false),
			SecurityContext:               podSecurity,
			Containers: []corev1.Container{{
				Name:            "compute",
				Image:           image,
				ImagePullPolicy: corev1.PullIfNotPresent,
				Command:         command,
				Env:             env,
				Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{
						corev1.ResourceCPU:    resource.MustParse("10m"),
						corev1.ResourceMemory: resource.MustParse("128Mi"),
					},
					Limits: limits,
				},
				SecurityContext: security,
				VolumeMounts: []corev1.VolumeMount{
					{Name: "private", MountPath: privateDir},
					{Name: "public", MountPath: shareDir},
					{Name: "ephemeral-disks", MountPath: ephemeralDiskDir},
					{Name: "libvirt-runtime", MountPath: libvirtRuntime},
					{Name: "sockets", MountPath: shareDir + "/sockets"},
					{Name: "container-disks", MountPath: containerDiskDir, MountPropagation: hostToContainer},
					{Name: "hotplug-disks", MountPath: hotplugDiskDir, MountPropagation: hostToContainer},
				},
				ReadinessProbe: &corev1.Probe{
					ProbeHandler: corev1.ProbeHandler{
						Exec: &corev1.ExecAction{Command: []string{"test", "-e", statusFile(v, root)}},
					},
					PeriodSeconds: 1,
					// A probe that times out on a loaded node would read as a stopped
					// guest: a generous timeout, and two failures in a row.
					TimeoutSeconds:   5,
					FailureThreshold: 2,
				},
				TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
			}},
			Volumes: []corev1.Volume{
				emptyDir("private"),
				emptyDir("public"),
				emptyDir("sockets"),
				emptyDir("virt-bin-share-dir"),
				runtime,
				emptyDir("ephemeral-disks"),
				emptyDir("container-disks"),
				emptyDir("hotplug-disks"),
			},
		},
	}, nil
}

// statusFile is where libvirt keeps the running domain's status in the launcher:
// qemu/run/ of its runtime directory in session mode (non-root), qemu/ in system mode.
func statusFile(v *unstructured.Unstructured, root bool) string {
	dir := libvirtRuntime + "/qemu/run"
	if root {
		dir = libvirtRuntime + "/qemu"
	}
	return dir + "/" + v.GetNamespace() + "_" + v.GetName() + ".xml"
}

// standaloneVMI is v as virt-launcher's standalone mode takes it: what the API
// server holds of its metadata and spec, with a firmware UUID (and, with kvm, a CPU
// feature turned off; see below), and the
// status.runtimeUser that virt-api's mutating webhook sets at creation (107 for
// non-root launchers), which virt-launcher reads to choose libvirt's mode.
func standaloneVMI(v *unstructured.Unstructured, user int64, kvm bool) (string, error) {
	spec, _, _ := unstructured.NestedMap(v.Object, "spec")
	if _, set, _ := unstructured.NestedFieldNoCopy(spec, "domain", "cpu"); kvm && !set {
		// KubeVirt's default CPU, host-model, makes QEMU 7.2 under KVM set the
		// IA32_ARCH_CAPABILITIES MSR, which a KVM host that is itself a virtual
		// machine may refuse (this machine's does: "failed to set MSR 0x10a", and
		// QEMU aborts). A KubeVirt user on such a node disables the feature in the
		// VMI, as this does for a VMI that says nothing of its CPU.
		if err := unstructured.SetNestedSlice(spec, []any{map[string]any{"name": "arch-capabilities", "policy": "disable"}}, "domain", "cpu", "features"); err != nil {
			return "", fmt.Errorf("VMI %s/%s: %w", v.GetNamespace(), v.GetName(), err)
		}
	}
	if uuid, _, _ := unstructured.NestedString(spec, "domain", "firmware", "uuid"); uuid == "" {
		// KubeVirt's VM controller gives every VMI of a VirtualMachine a firmware
		// UUID, which libvirt takes as the domain's (virt-launcher writes no <uuid>).
		// Without one libvirt 9.0 makes up a UUID at each define and refuses
		// virt-launcher's second define of the same domain. The VMI's UID is one.
		if err := unstructured.SetNestedField(spec, string(v.GetUID()), "domain", "firmware", "uuid"); err != nil {
			return "", fmt.Errorf("VMI %s/%s: %w", v.GetNamespace(), v.GetName(), err)
		}
	}
	vmi := map[string]any{
		"apiVersion": v.GetAPIVersion(),
		"kind":       v.GetKind(),
		"metadata": map[string]any{
			"name":        v.GetName(),
			"namespace":   v.GetNamespace(),
			"uid":         string(v.GetUID()),
			"labels":      v.GetLabels(),
			"annotations": v.GetAnnotations(),
		},
		"spec":   spec,
		"status": map[string]any{"runtimeUser": user},
	}
	b, err := json.Marshal(vmi)
	if err != nil {
		return "", fmt.Errorf("VMI %s/%s as %s: %w", v.GetNamespace(), v.GetName(), standaloneVMIEnv, err)
	}
	return string(b), nil
}
