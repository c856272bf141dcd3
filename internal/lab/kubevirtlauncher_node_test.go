package lab

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// TestKubeVirtLauncherOnRealNode runs KubeVirt's own virt-launcher in the lab's
// launcher pods on the real node, with the collector's DaemonSet as users deploy
// it: a VMI with /dev/kvm (where this machine has it), an emulated one and one with
// a root launcher. The domains, their XML and libvirt's layout in the pods are
// virt-launcher's; the collector's lines must be exact at every step: all three,
// then without the one whose guest stopped (its VMI Succeeded), then without the
// one deleted.
func TestKubeVirtLauncherOnRealNode(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	n := startLabNode(t, ctx)
	kubectl := func(stdin string, args ...string) string {
		t.Helper()
		return n.kubectl(t, ctx, stdin, args...)
	}
	// launcher is the VMI's launcher pod, the one status.activePods names.
	launcher := func(name string) *corev1.Pod {
		t.Helper()
		var active map[string]string
		out := kubectl("", "get", "vmi", "-n", "default", name, "-o", "jsonpath={.status.activePods}")
		if err := yaml.Unmarshal([]byte(out), &active); err != nil || len(active) != 1 {
			t.Fatalf("VMI %s has activePods %q (%v), want one", name, out, err)
		}
		pods, err := n.c.Clientset.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for i, p := range pods.Items {
			if _, ok := active[string(p.UID)]; ok {
				return &pods.Items[i]
			}
		}
		t.Fatalf("VMI %s: no pod of activePods %v", name, active)
		return nil
	}
	waitLines := func(want ...string) {
		t.Helper()
		n.waitLines(t, ctx, want...)
	}
	line := func(typ, name string) string { return n.line(typ, "default", name) }

	accelerated := n.accelerated()
	kubectl(vmiYAML("kvm-vm")+"---\n"+vmiYAML("emulated-vm", EmulationAnnotation)+"---\n"+vmiYAML("root-vm", RootLauncherAnnotation), "create", "-f", "-")
	all := []string{line(accelerated, "kvm-vm"), line("qemu-tcg", "emulated-vm"), line(accelerated, "root-vm")}
	waitLines(all...)

	// What made them is KubeVirt's: the live domain, asked of each launcher's
	// libvirt through the socket and URI virt-launcher uses.
	for _, tc := range []struct {
		name, typ string
		user      int64
	}{
		{"kvm-vm", map[bool]string{true: "kvm", false: "qemu"}[n.lab.KVM], 107},
		{"emulated-vm", "qemu", 107},
		{"root-vm", map[bool]string{true: "kvm", false: "qemu"}[n.lab.KVM], 0},
	} {
		pod := launcher(tc.name)
		var status struct {
			RuntimeUser *int64 `json:"runtimeUser"`
		}
		if err := yaml.Unmarshal([]byte(kubectl("", "get", "vmi", "-n", "default", tc.name, "-o", "jsonpath={.status}")), &status); err != nil {
			t.Fatal(err)
		}
		if status.RuntimeUser == nil || *status.RuntimeUser != tc.user {
			t.Errorf("VMI %s: status.runtimeUser %v, want %d", tc.name, status.RuntimeUser, tc.user)
		}
		statusFile := "/var/run/libvirt/qemu/run/default_" + tc.name + ".xml"
		if tc.user == 0 {
			statusFile = "/var/run/libvirt/qemu/default_" + tc.name + ".xml"
		}
		xml := kubectl("", "exec", "-n", "default", pod.Name, "--", "virsh", "-c", launcherURI(pod), "dumpxml", "default_"+tc.name)
		if !strings.Contains(xml, fmt.Sprintf("<domain type='%s'", tc.typ)) || !strings.Contains(xml, "<kubevirt xmlns=\"http://kubevirt.io\">") {
			t.Errorf("VMI %s: the live domain is not virt-launcher's of type %s:\n%s", tc.name, tc.typ, xml)
		}
		if out, err := n.c.Kubectl(ctx, nil, "exec", "-n", "default", pod.Name, "--", "test", "-f", statusFile); err != nil {
			t.Errorf("VMI %s: no status file %s in its launcher (%v %s)", tc.name, statusFile, err, out)
		}
	}

	// The guest stops from inside its launcher: the VMI Succeeds and its line goes,
	// although virt-launcher itself lingers for a while.
	pod := launcher("emulated-vm")
	kubectl("", "exec", "-n", "default", pod.Name, "--", "virsh", "-c", launcherURI(pod), "destroy", "default_emulated-vm")
	stopped := time.Now()
	waitLines(line(accelerated, "kvm-vm"), line(accelerated, "root-vm"))
	t.Logf("line gone %s after the guest was destroyed", time.Since(stopped).Round(time.Millisecond))
	if phase := kubectl("", "get", "vmi", "-n", "default", "emulated-vm", "-o", "jsonpath={.status.phase}"); phase != "Succeeded" {
		t.Errorf("VMI emulated-vm is %s after its guest stopped, want Succeeded", phase)
	}

	// A deleted VMI's line goes.
	kubectl("", "delete", "vmi", "-n", "default", "kvm-vm", "--wait=false")
	waitLines(line(accelerated, "root-vm"))
	kubectl("", "delete", "vmi", "-n", "default", "--all", "--wait=false")
	waitLines()
}
