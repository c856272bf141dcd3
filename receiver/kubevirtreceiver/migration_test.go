package kubevirtreceiver

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/metadata"
)

// TestMigrationWithinTheNode goes through a migration within the node the way
// KubeVirt's status of the VMI goes (pkg/virt-controller/watch/migration): first
// status.runtimeUser is patched for the target while the source launcher still runs
// as the old user; then the target pod is listed beside the source in
// status.activePods; then the source's domain is gone and the migration completes,
// the source pod left listed. The series is the source's type until the target's
// domain answers and the target's after completion, and after completion the leftover
// entry costs no failed read.
func TestMigrationWithinTheNode(t *testing.T) {
	api := startAPIServer(t)
	node := testenv.MustStartNode(t, testenv.NodeOptions{NodeName: nodeA})
	ctx := context.Background()
	from, fromType := "qemu", "qemu-tcg"
	if ok, _ := testenv.KVMUsable(); ok {
		from, fromType = "kvm", "kvm" // so that a stale type would show
	}
	source, err := node.StartLauncher(ctx, "default", "vm", from)
	require.NoError(t, err)
	require.NoError(t, api.CreateVMI(ctx, "default", "vm"))
	require.NoError(t, api.SetVMIStatus(ctx, "default", "vm", source.RunningStatus()))
	r, v := startReceiverWith(t, api, nodeA, LibvirtConfig{Source: SourceLauncher, PodsDir: node.PodsDir()}, nil)
	waitView(t, v, map[string]string{"default/vm": fromType}, soon)

	// runtimeUser names the target's user (root) while the source runs as 107: the
	// source's status file is looked for where a root launcher keeps it, and its
	// socket is asked with a system-mode URI first, which it refuses.
	st := source.RunningStatus()
	root := int64(0)
	st.RuntimeUser = &root
	before := detections(r)
	require.NoError(t, api.SetVMIStatus(ctx, "default", "vm", st))
	waitFor(t, "a detection with runtimeUser patched", func() bool { return detections(r) > before })
	require.Equal(t, fromType, currentType(r, "default/vm"))
	require.Zero(t, failures(r, metadata.AttributeReasonLibvirtUnreachable), "the source's socket did not answer")

	// The target pod runs beside it, listed in activePods.
	target, err := node.StartLauncher(ctx, "default", "vm", "qemu")
	require.NoError(t, err)
	st.ActivePods = map[string]string{source.PodUID: nodeA, target.PodUID: nodeA}
	user := target.RuntimeUser()
	st.RuntimeUser = &user
	before = detections(r)
	require.NoError(t, api.SetVMIStatus(ctx, "default", "vm", st))
	waitFor(t, "a detection with both launchers listed", func() bool { return detections(r) > before })
	require.Contains(t, []string{fromType, "qemu-tcg"}, currentType(r, "default/vm"))

	// Completed: the source's domain is gone, its pod still listed; only
	// status.migrationState says so (mutation: without it in vmi.sameState, the
	// series stays the source's type and waitView fails).
	require.NoError(t, source.Libvirtd.DestroyGuest(source.Domain()))
	completeMigration(t, api, "default", "vm", "5d0c1e2f-0000-4000-8000-000000000001")
	waitView(t, v, map[string]string{"default/vm": "qemu-tcg"}, soon)
	failed := failures(r, metadata.AttributeReasonLibvirtUnreachable) + failures(r, metadata.AttributeReasonDomainMissing)
	for i := range 3 {
		before = detections(r)
		setPaused(t, api, "default", "vm", i%2 == 0)
		waitFor(t, "a detection after the migration", func() bool { return detections(r) > before })
		require.Equal(t, "qemu-tcg", currentType(r, "default/vm"))
	}
	require.Equal(t, failed, failures(r, metadata.AttributeReasonLibvirtUnreachable)+failures(r, metadata.AttributeReasonDomainMissing),
		"reads failed with the source's pod left in activePods")
}

// completeMigration writes status.migrationState as KubeVirt does when migration uid
// of VMI ns/name has completed.
func completeMigration(t *testing.T, api *testenv.APIServer, ns, name, uid string) {
	t.Helper()
	setStatusField(t, api, ns, name, map[string]any{"migrationUid": uid, "completed": true, "targetNode": nodeA}, "migrationState")
}
