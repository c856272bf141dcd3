package kubevirtreceiver

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/metadata"
)

// TestLauncherSourceOnAKubeletStyleNode runs the receiver the way the DaemonSet runs it:
// source launcher, reading each VMI's own session-mode libvirtd (an unprivileged user,
// its socket at the kubelet path of its launcher pod) and the status file beside it.
func TestLauncherSourceOnAKubeletStyleNode(t *testing.T) {
	api := startAPIServer(t)
	node := testenv.MustStartNode(t, testenv.NodeOptions{NodeName: nodeA})
	ctx := context.Background()

	accel, reported := "qemu", "qemu-tcg"
	if ok, why := testenv.KVMUsable(); ok {
		accel, reported = "kvm", "kvm"
	} else {
		t.Logf("no KVM (%s): the accelerated launcher runs TCG", why)
	}
	fast, err := node.StartLauncher(ctx, "default", "fast", accel)
	require.NoError(t, err)
	slow, err := node.StartLauncher(ctx, "legacy", "slow", "qemu")
	require.NoError(t, err)
	for _, p := range []*testenv.LauncherPod{fast, slow} {
		require.NoError(t, api.CreateVMI(ctx, p.Namespace, p.Name))
		require.NoError(t, api.SetVMIStatus(ctx, p.Namespace, p.Name, p.RunningStatus()))
	}
	// Pending: scheduled, no launcher running yet.
	require.NoError(t, api.CreateVMI(ctx, "default", "pending"))
	require.NoError(t, api.SetVMIStatus(ctx, "default", "pending", testenv.VMIStatus{Phase: "Pending"}))

	r, v := startReceiverWith(t, api, nodeA, LibvirtConfig{Source: SourceLauncher, PodsDir: node.PodsDir()}, nil)
	want := map[string]string{"default/fast": reported, "legacy/slow": "qemu-tcg"}
	waitView(t, v, want, 10*time.Second)

	// Without a status file (a launcher that keeps none) the socket answers.
	require.NoError(t, os.Remove(fast.StatusFile()))
	before := detections(r)
	setPaused(t, api, "default", "fast", true)
	waitFor(t, "a detection from the socket", func() bool { return detections(r) > before })
	require.Equal(t, reported, currentType(r, "default/fast"))
	// A failed read would keep the type known for this launcher too: only the failure
	// count tells that the socket really answered (mutation: the launcher reader's
	// socket read always failing passed the type check and failed this one).
	require.Zero(t, failures(r, metadata.AttributeReasonLibvirtUnreachable), "the socket did not answer")

	// Without a socket the status file still answers.
	require.NoError(t, os.Remove(slow.SocketPath()))
	before = detections(r)
	setPaused(t, api, "legacy", "slow", true)
	waitFor(t, "a detection from the status file", func() bool { return detections(r) > before })
	require.Equal(t, "qemu-tcg", currentType(r, "legacy/slow"))

	// A status file that does not parse is passed over for the socket, the authority.
	require.NoError(t, os.WriteFile(fast.StatusFile(), []byte("<domstatus><domain type='kvm'>truncat"), 0o600))
	before = detections(r)
	setPaused(t, api, "default", "fast", false)
	waitFor(t, "a detection past a broken status file", func() bool { return detections(r) > before })
	require.Equal(t, reported, currentType(r, "default/fast"))
	require.Zero(t, failures(r, metadata.AttributeReasonInvalidXML))
	require.Zero(t, failures(r, metadata.AttributeReasonLibvirtUnreachable), "the socket did not answer")

	// With no socket to fall back on, it is reported unknown, counted as invalid_xml.
	require.NoError(t, os.WriteFile(slow.StatusFile(), []byte("not xml"), 0o600))
	setPaused(t, api, "legacy", "slow", false)
	waitView(t, v, map[string]string{"default/fast": reported, "legacy/slow": "unknown"}, 10*time.Second)
	require.Positive(t, failures(r, metadata.AttributeReasonInvalidXML))

	// The launcher pod goes away with its VMI.
	require.NoError(t, slow.Stop())
	require.NoError(t, api.SetVMIStatus(ctx, "legacy", "slow", testenv.VMIStatus{Phase: "Succeeded", NodeName: nodeA}))
	waitView(t, v, map[string]string{"default/fast": reported}, 10*time.Second)
}
