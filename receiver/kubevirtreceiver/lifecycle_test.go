package kubevirtreceiver

// The seeds' lifecycle and error tables, row by row, against a real kube-apiserver and
// a real libvirt (a launcher-like libvirtd with QEMU guests, or libvirt's test driver).

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/metadata"
)

const nodeA, nodeB = "node-a", "node-b"

// acceleratedType is the domain type and the reported type of a hardware-accelerated
// guest on this machine, falling back to TCG where /dev/kvm is not usable.
func acceleratedType(t *testing.T, lv *testenv.Libvirtd) (domainType, reported string) {
	if ok, why := lv.KVMUsable(); !ok {
		t.Logf("no KVM (%s): accelerated guests run under TCG here", why)
		return "qemu", "qemu-tcg"
	}
	return "kvm", "kvm"
}

func TestLifecycleOnRealLibvirtd(t *testing.T) {
	api := startAPIServer(t)
	lv := testenv.MustStartLibvirtd(t, testenv.LibvirtdOptions{})
	ctx := context.Background()
	logs, tweak := observeLogs()
	r, v := startReceiver(t, api, nodeA, lv.URI(), tweak)

	// Phase becomes Running on this node: series created.
	require.NoError(t, lv.StartGuest(ctx, "default_vm-1", "qemu"))
	runVMI(t, api, "default", "vm-1", nodeA)
	waitView(t, v, map[string]string{"default/vm-1": "qemu-tcg"}, 10*time.Second)

	// Running whose domain does not exist yet: no series until libvirt starts it.
	runVMI(t, api, "default", "vm-2", nodeA)
	waitFor(t, "the detection of vm-2", func() bool { return failures(r, metadata.AttributeReasonDomainMissing) > 0 })
	require.Equal(t, map[string]string{"default/vm-1": "qemu-tcg"}, v.snapshot())
	domType, reported := acceleratedType(t, lv)
	require.NoError(t, lv.StartGuest(ctx, "default_vm-2", domType))
	waitView(t, v, map[string]string{"default/vm-1": "qemu-tcg", "default/vm-2": reported}, 10*time.Second)

	// Resume from pause: detected again. Pausing is a change the receiver looks at
	// too; its detection is awaited first, so that only the resume's own can end the
	// second wait.
	n := detectionsOf(logs, "default/vm-1")
	setPaused(t, api, "default", "vm-1", true)
	waitFor(t, "the detection after pause", func() bool { return detectionsOf(logs, "default/vm-1") > n })
	n = detectionsOf(logs, "default/vm-1")
	setPaused(t, api, "default", "vm-1", false)
	waitFor(t, "a detection after resume", func() bool { return detectionsOf(logs, "default/vm-1") > n })

	// Phase leaves Running: series removed. Deleted: series removed.
	require.NoError(t, api.SetVMIStatus(ctx, "default", "vm-1", testenv.VMIStatus{Phase: "Succeeded", NodeName: nodeA}))
	waitView(t, v, map[string]string{"default/vm-2": reported}, 10*time.Second)
	require.NoError(t, api.DeleteVMI(ctx, "default", "vm-2"))
	waitView(t, v, map[string]string{}, 10*time.Second)

	// A VMI with no node gets no series even though it says Running and its domain
	// runs. vm-4, written after it and on this node, shows that the receiver got past
	// it; a wrong series of vm-3 would show within the hold.
	require.NoError(t, lv.StartGuest(ctx, "default_vm-3", "qemu"))
	require.NoError(t, lv.StartGuest(ctx, "default_vm-4", "qemu"))
	require.NoError(t, api.CreateVMI(ctx, "default", "vm-3"))
	require.NoError(t, api.SetVMIStatus(ctx, "default", "vm-3", testenv.VMIStatus{Phase: "Running"}))
	runVMI(t, api, "default", "vm-4", nodeA)
	waitView(t, v, map[string]string{"default/vm-4": "qemu-tcg"}, 10*time.Second)
	holdView(t, v, map[string]string{"default/vm-4": "qemu-tcg"}, time.Second)
}

func TestMigrationMovesTheSeriesBetweenNodes(t *testing.T) {
	api := startAPIServer(t)
	source := testenv.MustStartLibvirtd(t, testenv.LibvirtdOptions{})
	target := testenv.MustStartLibvirtd(t, testenv.LibvirtdOptions{})
	ctx := context.Background()
	_, onA := startReceiver(t, api, nodeA, source.URI(), nil)
	_, onB := startReceiver(t, api, nodeB, target.URI(), nil)

	// The source runs the guest under TCG; the target can accelerate it, so the
	// target's receiver must detect afresh rather than carry the old type over.
	domType, reported := acceleratedType(t, target)
	require.NoError(t, source.StartGuest(ctx, "prod_db", "qemu"))
	runVMI(t, api, "prod", "db", nodeA)
	waitView(t, onA, map[string]string{"prod/db": "qemu-tcg"}, 10*time.Second)
	require.Empty(t, onB.snapshot())

	// Migration completes: the target's domain runs, KubeVirt moves nodeName and the
	// node label to the target, and the source's domain goes away.
	require.NoError(t, target.StartGuest(ctx, "prod_db", domType))
	require.NoError(t, api.SetVMIStatus(ctx, "prod", "db", testenv.VMIStatus{Phase: "Running", NodeName: nodeB}))
	require.NoError(t, source.DestroyGuest("prod_db"))
	waitView(t, onB, map[string]string{"prod/db": reported}, 10*time.Second)
	waitView(t, onA, map[string]string{}, 10*time.Second)

	// From here on, no look at either node may show the VMI on node-a.
	holdView(t, onA, map[string]string{}, 3*time.Second)
}

func TestLibvirtdOutageKeepsKnownTypesAndRecovers(t *testing.T) {
	api := startAPIServer(t)
	lv := testenv.MustStartLibvirtd(t, testenv.LibvirtdOptions{})
	ctx := context.Background()
	r, v := startReceiver(t, api, nodeA, lv.URI(), nil)

	domType, reported := acceleratedType(t, lv)
	require.NoError(t, lv.StartGuest(ctx, "default_known", domType))
	require.NoError(t, lv.StartGuest(ctx, "default_newcomer", "qemu"))
	runVMI(t, api, "default", "known", nodeA)
	waitView(t, v, map[string]string{"default/known": reported}, 10*time.Second)

	// libvirtd crashes; its guests keep running. A known type survives a re-detection
	// during the outage: pausing makes one, and as known is the only VMI so far, the
	// next detection counted is its own.
	require.NoError(t, lv.KillDaemon(syscall.SIGKILL))
	before := detections(r)
	setPaused(t, api, "default", "known", true)
	waitFor(t, "a detection during the outage", func() bool { return detections(r) > before })
	require.Positive(t, failures(r, metadata.AttributeReasonLibvirtUnreachable))
	require.Equal(t, reported, currentType(r, "default/known"))

	// A VMI new in the outage has no known type: unknown.
	runVMI(t, api, "default", "newcomer", nodeA)
	waitView(t, v, map[string]string{"default/known": reported, "default/newcomer": "unknown"}, 10*time.Second)

	// libvirtd comes back: unknown becomes the real type within 10 s, without a restart.
	require.NoError(t, lv.StartDaemon(ctx))
	restarted := time.Now()
	waitView(t, v, map[string]string{"default/known": reported, "default/newcomer": "qemu-tcg"}, 10*time.Second)
	t.Logf("unknown -> qemu-tcg %v after libvirtd came back", time.Since(restarted).Round(time.Millisecond))
}

// testNode has one domain of each type the receiver knows and one it does not, for
// libvirt's in-process test driver.
const testNode = `<node>
  <domain type='hyperv'><name>default_mshv-vm</name><memory>65536</memory><os><type arch='x86_64'>hvm</type></os></domain>
  <domain type='test'><name>default_odd-vm</name><memory>65536</memory><os><type arch='x86_64'>hvm</type></os></domain>
</node>`

func TestUnsupportedTypeIsUnknownAndMSHVIsReported(t *testing.T) {
	api := startAPIServer(t)
	path := filepath.Join(t.TempDir(), "node.xml")
	require.NoError(t, os.WriteFile(path, []byte(testNode), 0o600))
	r, v := startReceiver(t, api, nodeA, "test://"+path, nil)

	runVMI(t, api, "default", "mshv-vm", nodeA)
	runVMI(t, api, "default", "odd-vm", nodeA)
	waitView(t, v, map[string]string{"default/mshv-vm": "mshv", "default/odd-vm": "unknown"}, 10*time.Second)
	require.Positive(t, failures(r, metadata.AttributeReasonUnsupportedType))
}

func failures(r *kubevirtReceiver, reason metadata.AttributeReason) int64 {
	r.stats.mu.Lock()
	defer r.stats.mu.Unlock()
	return r.stats.failures[reason]
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := wait.PollUntilContextCancel(ctx, 10*time.Millisecond, true, func(context.Context) (bool, error) { return cond(), nil }); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}
