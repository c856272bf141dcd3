package detect

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/hypervisor"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/launcher"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/vmi"
)

const (
	stalePod = "aaaaaaaa-0000-4000-8000-000000000000" // a completed pod left in status.activePods
	livePod  = "bbbbbbbb-0000-4000-8000-000000000000"
)

// TestLauncherReaderReadsPastACompletedPod: a pod that KubeVirt left listed after a
// migration, whose directory is gone, sorts before the running one; the read still
// answers from the running one's status file, with no error and no connection made.
func TestLauncherReaderReadsPastACompletedPod(t *testing.T) {
	// A pods_dir short enough for sockets below it: relative to a fresh directory.
	t.Chdir(t.TempDir())
	const pods = "p"
	v := &vmi.VMI{Namespace: "ns", Name: "vm", Pods: []string{stalePod, livePod}, RuntimeUser: 107}
	ls, err := launcher.Find(pods, v)
	if err != nil {
		t.Fatal(err)
	}
	status := ls[1].StatusFile
	if err := os.MkdirAll(filepath.Dir(status), 0o755); err != nil {
		t.Fatal(err)
	}
	doc := "<domstatus state='running'><domain type='kvm'><name>ns_vm</name></domain></domstatus>"
	if err := os.WriteFile(status, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	r := NewLauncherReader(pods, time.Second, Handlers{}).(*launcherReader)
	t.Cleanup(r.Close)
	for range 3 {
		res, err := r.Read(context.Background(), v)
		if err != nil || res.Type != hypervisor.KVM || res.From != status {
			t.Fatalf("Read = %+v from %s, %v; want kvm from %s", res.Detection, res.From, err, status)
		}
	}
	if len(r.conns) != 0 {
		t.Errorf("connections made: %v", r.conns)
	}
}

// TestLikelyFirstAsksTheAnsweringLauncherFirst: the socket that answered last, then
// the sockets that exist, then the rest, each group in the VMI's order.
func TestLikelyFirstAsksTheAnsweringLauncherFirst(t *testing.T) {
	dir := t.TempDir()
	l := func(name string) launcher.Launcher { return launcher.Launcher{Socket: filepath.Join(dir, name)} }
	for _, name := range []string{"exists-1", "exists-2", "kept"} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	in := []launcher.Launcher{l("gone-1"), l("exists-1"), l("gone-2"), l("kept"), l("exists-2")}
	var got []string
	for _, x := range likelyFirst(in, &launcherConn{socket: l("kept").Socket}) {
		got = append(got, filepath.Base(x.Socket))
	}
	want := []string{"kept", "exists-1", "exists-2", "gone-1", "gone-2"}
	if len(got) != len(want) {
		t.Fatalf("likelyFirst = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("likelyFirst = %v, want %v", got, want)
		}
	}
	if got := likelyFirst(in[:1], nil); len(got) != 1 || got[0] != in[0] {
		t.Errorf("one launcher: %v", got)
	}
}

// TestLauncherReaderLetsGoOfAMigrationsSource: a migration within the node. The
// source's launcher answers over its socket while status.runtimeUser already names
// the target's user (so its status file is looked for in the wrong place), and the
// reader keeps that connection; once the source's domain is gone and the target's
// status file answers, the reader reports the target's type and holds no connection
// to the source, which would otherwise go on dialling it after its pod is gone.
// (Mutation: without the Forget on a status-file answer, the last check fails.)
func TestLauncherReaderLetsGoOfAMigrationsSource(t *testing.T) {
	node := testenv.MustStartNode(t, testenv.NodeOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	source, err := node.StartLauncher(ctx, "default", "vm", "qemu")
	if err != nil {
		t.Fatal(err)
	}
	r := NewLauncherReader(node.PodsDir(), 5*time.Second, Handlers{}).(*launcherReader)
	t.Cleanup(r.Close)

	v := &vmi.VMI{Namespace: "default", Name: "vm", Pods: []string{source.PodUID}, RuntimeUser: 0}
	res, err := r.Read(ctx, v)
	if err != nil || res.Type != hypervisor.QEMUTCG || res.From != source.SocketPath() {
		t.Fatalf("source with runtimeUser patched: Read = %+v from %s, %v; want qemu-tcg from %s", res.Detection, res.From, err, source.SocketPath())
	}
	if c := r.kept(v.Key()); c == nil || c.socket != source.SocketPath() {
		t.Fatalf("after the socket answered, kept = %+v; want the source's connection", c)
	}

	target, err := node.StartLauncher(ctx, "default", "vm", "qemu")
	if err != nil {
		t.Fatal(err)
	}
	if err := source.Libvirtd.DestroyGuest(source.Domain()); err != nil {
		t.Fatal(err)
	}
	v = &vmi.VMI{Namespace: "default", Name: "vm", Pods: sortedPair(source.PodUID, target.PodUID), RuntimeUser: target.RuntimeUser()}
	res, err = r.Read(ctx, v)
	if err != nil || !strings.Contains(res.From, target.PodUID) || filepath.Base(res.From) != filepath.Base(target.StatusFile()) {
		t.Fatalf("after the migration: Read = %+v from %s, %v; want the target's (pod %s) status file", res.Detection, res.From, err, target.PodUID)
	}
	if c := r.kept(v.Key()); c != nil {
		t.Errorf("after the target's status file answered, the reader still holds a connection to %s", c.socket)
	}
}

func sortedPair(a, b string) []string {
	if b < a {
		return []string{b, a}
	}
	return []string{a, b}
}
