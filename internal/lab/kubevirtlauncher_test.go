package lab

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

func launcherTestVMI(annotations map[string]string) *unstructured.Unstructured {
	v := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "kubevirt.io/v1",
		"kind":       "VirtualMachineInstance",
		"spec": map[string]any{
			"domain": map[string]any{"devices": map[string]any{}, "resources": map[string]any{"requests": map[string]any{"memory": "64Mi"}}},
		},
	}}
	v.SetNamespace("default")
	v.SetName("my-vm")
	v.SetUID(types.UID("5b6a4ac9-0c2e-4a4e-9d55-2f1c0f4b1e11"))
	v.SetAnnotations(annotations)
	return v
}

// TestKubeVirtLauncherPod holds the launcher pod to what KubeVirt v1.7.0's
// virt-controller renders for such a VMI (pkg/virt-controller/services:
// renderLaunchManifest, rendervolumes.go, rendercontainer.go), non-root and root.
func TestKubeVirtLauncherPod(t *testing.T) {
	for _, tc := range []struct {
		name        string
		annotations map[string]string
		kvm, root   bool
	}{
		{name: "NonRootKVM", kvm: true},
		{name: "NonRootEmulated", annotations: map[string]string{EmulationAnnotation: "true"}},
		{name: "RootKVM", annotations: map[string]string{RootLauncherAnnotation: "true"}, kvm: true, root: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := launcherTestVMI(tc.annotations)
			pod, err := virtLauncherPod(v, LauncherImage, tc.kvm)
			if err != nil {
				t.Fatal(err)
			}
			if len(pod.Spec.Containers) != 1 {
				t.Fatalf("%d containers, want compute only", len(pod.Spec.Containers))
			}
			c := pod.Spec.Containers[0]
			if c.Name != "compute" || c.Image != LauncherImage {
				t.Errorf("container %s image %s, want compute %s", c.Name, c.Image, LauncherImage)
			}

			wantCmd := []string{"/usr/bin/virt-launcher-monitor",
				"--qemu-timeout", "240s", "--name", "my-vm", "--uid", string(v.GetUID()), "--namespace", "default",
				"--kubevirt-share-dir", "/var/run/kubevirt", "--ephemeral-disk-dir", "/var/run/kubevirt-ephemeral-disks",
				"--container-disk-dir", "/var/run/kubevirt/container-disks", "--grace-period-seconds", "45",
				"--hook-sidecars", "0", "--ovmf-path", "/usr/share/OVMF", "--disk-memory-limit", "2097152000"}
			if !tc.root {
				wantCmd = append(wantCmd, "--run-as-nonroot")
			}
			if !tc.kvm {
				wantCmd = append(wantCmd, "--allow-emulation")
			}
			if diff := cmp.Diff(wantCmd, c.Command); diff != "" {
				t.Errorf("command (-want +got):\n%s", diff)
			}
			if got := *pod.Spec.TerminationGracePeriodSeconds; got != 60 {
				t.Errorf("terminationGracePeriodSeconds %d, want 60 (30 + 15 + 15)", got)
			}

			env := map[string]string{}
			for _, e := range c.Env {
				env[e.Name] = e.Value
			}
			xdg := []string{"XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_RUNTIME_DIR"}
			for _, k := range xdg {
				want := map[string]string{"XDG_CACHE_HOME": "/var/run/kubevirt-private", "XDG_CONFIG_HOME": "/var/run/kubevirt-private", "XDG_RUNTIME_DIR": "/var/run"}[k]
				if tc.root {
					want = ""
				}
				if env[k] != want {
					t.Errorf("%s = %q, want %q", k, env[k], want)
				}
			}
			var standalone struct {
				Metadata struct {
					Name, Namespace, UID string
				}
				Spec   map[string]any
				Status struct {
					RuntimeUser *int64 `json:"runtimeUser"`
				}
			}
			if err := json.Unmarshal([]byte(env["STANDALONE_VMI"]), &standalone); err != nil {
				t.Fatalf("STANDALONE_VMI %q: %v", env["STANDALONE_VMI"], err)
			}
			wantUser := int64(107)
			if tc.root {
				wantUser = 0
			}
			if standalone.Metadata.Name != "my-vm" || standalone.Metadata.Namespace != "default" || standalone.Metadata.UID != string(v.GetUID()) ||
				standalone.Status.RuntimeUser == nil || *standalone.Status.RuntimeUser != wantUser {
				t.Errorf("STANDALONE_VMI %s: want my-vm in default with its UID and status.runtimeUser %d", env["STANDALONE_VMI"], wantUser)
			}
			// The VMI's spec, with the firmware UUID KubeVirt's VM controller would
			// have given it and, under KVM, the CPU feature this machine refuses off.
			wantSpec := launcherTestVMI(nil).Object["spec"].(map[string]any)
			domain := wantSpec["domain"].(map[string]any)
			domain["firmware"] = map[string]any{"uuid": string(v.GetUID())}
			if tc.kvm {
				domain["cpu"] = map[string]any{"features": []any{map[string]any{"name": "arch-capabilities", "policy": "disable"}}}
			}
			if diff := cmp.Diff(wantSpec, standalone.Spec); diff != "" {
				t.Errorf("STANDALONE_VMI's spec (-want +got):\n%s", diff)
			}
			if _, changed := v.Object["spec"].(map[string]any)["domain"].(map[string]any)["firmware"]; changed {
				t.Error("virtLauncherPod changed the VMI it was given")
			}

			sc, psc := c.SecurityContext, pod.Spec.SecurityContext
			if *sc.RunAsUser != wantUser || *psc.RunAsUser != wantUser || *psc.FSGroup != 107 || *sc.RunAsNonRoot == tc.root {
				t.Errorf("security context %+v, pod %+v: want uid %d, fsGroup 107", sc, psc, wantUser)
			}
			if got := *runAsUser(pod); got != wantUser {
				t.Errorf("runAsUser = %d, want %d (the VMI's status.runtimeUser)", got, wantUser)
			}
			caps := sc.Capabilities
			if tc.root {
				if !slices.Equal(caps.Add, []corev1.Capability{"NET_BIND_SERVICE", "SYS_NICE"}) || caps.Drop != nil || sc.AllowPrivilegeEscalation != nil {
					t.Errorf("root capabilities %+v, privilege escalation %v: want NET_BIND_SERVICE and SYS_NICE added, nothing dropped", caps, sc.AllowPrivilegeEscalation)
				}
			} else if !slices.Equal(caps.Add, []corev1.Capability{"NET_BIND_SERVICE"}) || !slices.Equal(caps.Drop, []corev1.Capability{"ALL"}) ||
				ptr.Deref(sc.AllowPrivilegeEscalation, true) || *sc.RunAsGroup != 107 || *psc.RunAsGroup != 107 {
				t.Errorf("non-root security context %+v: want gid 107, ALL dropped but NET_BIND_SERVICE, no privilege escalation", sc)
			}

			mounts := map[string]string{}
			for _, m := range c.VolumeMounts {
				mounts[m.Name] = m.MountPath
			}
			wantMounts := map[string]string{
				"private": "/var/run/kubevirt-private", "public": "/var/run/kubevirt", "ephemeral-disks": "/var/run/kubevirt-ephemeral-disks",
				"libvirt-runtime": "/var/run/libvirt", "sockets": "/var/run/kubevirt/sockets",
				"container-disks": "/var/run/kubevirt/container-disks", "hotplug-disks": "/var/run/kubevirt/hotplug-disks",
			}
			if diff := cmp.Diff(wantMounts, mounts); diff != "" {
				t.Errorf("mounts (-want +got):\n%s", diff)
			}
			var volumes []string
			for _, vol := range pod.Spec.Volumes {
				if vol.EmptyDir == nil {
					t.Errorf("volume %s is not an emptyDir", vol.Name)
				}
				volumes = append(volumes, vol.Name)
			}
			if want := []string{"private", "public", "sockets", "virt-bin-share-dir", "libvirt-runtime", "ephemeral-disks", "container-disks", "hotplug-disks"}; !slices.Equal(volumes, want) {
				t.Errorf("volumes %v, want %v", volumes, want)
			}

			_, hasKVM := c.Resources.Limits[KVMResource]
			if hasKVM != tc.kvm {
				t.Errorf("limits %v: %s present %v, want %v", c.Resources.Limits, KVMResource, hasKVM, tc.kvm)
			}
			wantStatus := "/var/run/libvirt/qemu/run/default_my-vm.xml"
			if tc.root {
				wantStatus = "/var/run/libvirt/qemu/default_my-vm.xml"
			}
			if got := c.ReadinessProbe.Exec.Command; !slices.Equal(got, []string{"test", "-e", wantStatus}) {
				t.Errorf("readiness probe %v, want the status file %s", got, wantStatus)
			}
			if pod.Labels["kubevirt.io"] != "virt-launcher" || pod.Labels["kubevirt.io/created-by"] != string(v.GetUID()) ||
				pod.Annotations["kubevirt.io/domain"] != "my-vm" || pod.OwnerReferences[0].UID != v.GetUID() {
				t.Errorf("labels %v, annotations %v, owner %v: want KubeVirt's, owned by the VMI", pod.Labels, pod.Annotations, pod.OwnerReferences)
			}
		})
	}
}

// TestStandaloneVMIKeepsWhatTheVMISays: a VMI's own firmware UUID and CPU are
// passed on as they are.
func TestStandaloneVMIKeepsWhatTheVMISays(t *testing.T) {
	v := launcherTestVMI(nil)
	domain := v.Object["spec"].(map[string]any)["domain"].(map[string]any)
	domain["firmware"] = map[string]any{"uuid": "0d6c7a3e-8e55-4c39-9a57-3f4cbb1d2a10"}
	domain["cpu"] = map[string]any{"model": "host-passthrough"}
	got, err := standaloneVMI(v, 107, true)
	if err != nil {
		t.Fatal(err)
	}
	var standalone struct{ Spec map[string]any }
	if err := json.Unmarshal([]byte(got), &standalone); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(v.Object["spec"], standalone.Spec); diff != "" {
		t.Errorf("STANDALONE_VMI's spec (-want +got):\n%s", diff)
	}
}

// TestLauncherImageIsThePinnedRelease keeps the image's tag, which hack/images.sh
// derives from tools/kubevirt/go.mod, equal to that pin.
func TestLauncherImageIsThePinnedRelease(t *testing.T) {
	b, err := os.ReadFile("../../tools/kubevirt/go.mod")
	if err != nil {
		t.Fatal(err)
	}
	var pinned string
	for line := range strings.Lines(string(b)) {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "kubevirt.io/kubevirt" {
			pinned = f[1]
			break
		}
	}
	if pinned == "" {
		t.Fatal("tools/kubevirt/go.mod requires no kubevirt.io/kubevirt")
	}
	if want := "localhost/otelcol-kubevirt-lab/virt-launcher:" + pinned; LauncherImage != want {
		t.Errorf("LauncherImage = %s, want %s (tools/kubevirt/go.mod pins %s)", LauncherImage, want, pinned)
	}
}
