package e2e

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv"
)

// TestShippedConfigOnAKubeletStyleNode is the DaemonSet's situation: the built collector
// with the shipped configuration, untouched but for the node name, the pods directory
// and auth, on a node where every running VMI has its own launcher pod (a session-mode
// libvirtd as an unprivileged user, its socket at the kubelet path, a real guest).
func TestShippedConfigOnAKubeletStyleNode(t *testing.T) {
	bin := collectorBinary(t)
	api := testenv.MustStartAPIServer(t)
	nodeDir := testenv.MustStartNode(t, testenv.NodeOptions{NodeName: node})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	accel := "kvm"
	fast, err := nodeDir.StartLauncher(ctx, "default", "my-vm", accel)
	if errors.Is(err, testenv.ErrKVMUnusable) {
		t.Logf("%v: my-vm runs under TCG", err)
		accel = "qemu"
		fast, err = nodeDir.StartLauncher(ctx, "default", "my-vm", accel)
	}
	if err != nil {
		t.Fatal(err)
	}
	slow, err := nodeDir.StartLauncher(ctx, "legacy", "emulated-vm", "qemu")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []*testenv.LauncherPod{fast, slow} {
		if err := api.CreateVMI(ctx, p.Namespace, p.Name); err != nil {
			t.Fatal(err)
		}
		if err := api.SetVMIStatus(ctx, p.Namespace, p.Name, p.RunningStatus()); err != nil {
			t.Fatal(err)
		}
	}
	if err := api.CreateVMI(ctx, "default", "pending-vm"); err != nil {
		t.Fatal(err)
	}
	if err := api.SetVMIStatus(ctx, "default", "pending-vm", testenv.VMIStatus{Phase: "Pending"}); err != nil {
		t.Fatal(err)
	}

	col := startCollectorWith(ctx, t, testenv.CollectorOptions{Bin: bin, Env: []string{
		"K8S_NODE_NAME=" + node,
		"LIBVIRT_PODS_DIR=" + nodeDir.PodsDir(),
		"KUBEVIRT_AUTH_TYPE=kubeConfig",
		"KUBECONFIG=" + api.KubeconfigPath,
	}})
	wantFast := line(map[string]string{"kvm": "kvm", "qemu": "qemu-tcg"}[accel], "default", "my-vm")
	waitForLines(ctx, t, col, wantFast, line("qemu-tcg", "legacy", "emulated-vm"))

	// The launcher pod goes with its VMI.
	if err := slow.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := api.SetVMIStatus(ctx, "legacy", "emulated-vm", testenv.VMIStatus{Phase: "Succeeded", NodeName: node}); err != nil {
		t.Fatal(err)
	}
	waitForLines(ctx, t, col, wantFast)
}
