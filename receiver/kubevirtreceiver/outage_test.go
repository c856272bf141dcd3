package kubevirtreceiver

// No silent failure: each persistent failure a collector can meet (API server
// unreachable, RBAC denying it, KubeVirt's CRD missing, a launcher's libvirt
// unreachable) shows in its log within seconds, once however often it retries, saying
// what to check; shows in its self-metrics without waiting for collection_interval;
// and its end is logged once. Each against the real thing: kube-apiserver stopped, a
// user without rights, the CRD deleted, a launcher's libvirtd killed.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv"
)

const (
	watchFailed     = "Watching VirtualMachineInstances failed; retrying"
	watchRecovered  = "Watching VirtualMachineInstances again"
	syncedMetric    = "kubevirt.vmi.hypervisor.watch.synced"
	stalenessMetric = "kubevirt.vmi.hypervisor.watch.staleness"
	watchFailures   = "kubevirt.vmi.hypervisor.watch.failures"
)

// soon bounds how long a failure may take to reach the log and the metrics.
const soon = 5 * time.Second

// observeLogs is a tweak for startReceiver: the receiver logs (Debug and above) into
// the returned record.
func observeLogs() (*observer.ObservedLogs, func(*kubevirtReceiver)) {
	core, logs := observer.New(zapcore.DebugLevel)
	return logs, func(r *kubevirtReceiver) { r.logger = zap.New(core) }
}

// observeOutages is observeLogs with collection_interval an hour, so that whatever
// reaches the metrics during the test got there because it changed, not by the
// periodic emission.
func observeOutages() (*observer.ObservedLogs, func(*kubevirtReceiver)) {
	logs, observe := observeLogs()
	return logs, func(r *kubevirtReceiver) {
		observe(r)
		r.cfg.CollectionInterval = time.Hour
	}
}

// waitLog polls until msg has been logged and returns its first entry.
func waitLog(t *testing.T, logs *observer.ObservedLogs, msg string, within time.Duration) observer.LoggedEntry {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	if err := wait.PollUntilContextCancel(ctx, 10*time.Millisecond, true, func(context.Context) (bool, error) { return logs.FilterMessage(msg).Len() > 0, nil }); err != nil {
		t.Fatalf("%q not logged within %v; the log:\n%s", msg, within, dumpLogs(logs))
	}
	return logs.FilterMessage(msg).All()[0]
}

func dumpLogs(logs *observer.ObservedLogs) string {
	var b bytes.Buffer
	for _, e := range logs.All() {
		b.WriteString(e.Level.String() + " " + e.Message)
		for k, v := range e.ContextMap() {
			fmt.Fprintf(&b, " %s=%v", k, v)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// checkWatchOutage asserts what every failure of the VMI watch shows, once the receiver
// has met it: one warning naming the reason, the error and what to check, however often
// it has retried since; the watch not synced; the failures counted under reason; and
// the staleness growing.
func checkWatchOutage(t *testing.T, logs *observer.ObservedLogs, v *view, started time.Time, reason, inError, inHint string) {
	t.Helper()
	e := waitLog(t, logs, watchFailed, soon)
	t.Logf("%s: logged %v after the receiver started", reason, e.Time.Sub(started).Round(time.Millisecond))
	fields := e.ContextMap()
	require.Equal(t, zapcore.WarnLevel, e.Level)
	require.Equal(t, reason, fields["reason"])
	require.Contains(t, fields["error"], inError)
	require.Contains(t, fields["hint"], inHint)

	require.Zero(t, waitSelf(t, v, syncedMetric, soon, func(x float64) bool { return x == 0 }))
	// The reflector retries after 0.8-1.6 s, then 1.6-3.2 s: three failures take at most
	// about five seconds, and are logged once.
	waitSelf(t, v, watchFailures+"{"+reason+"}", 3*soon, func(x float64) bool { return x >= 3 })
	require.Equal(t, 1, logs.FilterMessage(watchFailed).Len(), "retries were logged again:\n%s", dumpLogs(logs))
	waitSelf(t, v, stalenessMetric, soon, func(x float64) bool { return x > 0 })
}

// checkWatchRecovered asserts the end of an outage of the watch: synced, not stale, and
// one line saying so.
func checkWatchRecovered(t *testing.T, logs *observer.ObservedLogs, v *view) {
	t.Helper()
	waitSelf(t, v, syncedMetric, soon, func(x float64) bool { return x == 1 })
	require.Zero(t, waitSelf(t, v, stalenessMetric, soon, func(x float64) bool { return x == 0 }))
	e := waitLog(t, logs, watchRecovered, soon)
	require.Equal(t, zapcore.InfoLevel, e.Level)
	require.Contains(t, e.ContextMap(), "outage")
	require.Equal(t, 1, logs.FilterMessage(watchRecovered).Len())
}

func TestAPIServerUnreachableIsLoggedAndMeasuredUntilItIsBack(t *testing.T) {
	verifyNoLeaks(t)
	api := startAPIServer(t)
	require.NoError(t, api.StopKubeAPIServer())
	uri := testDriverNode(t, map[string]string{"default_a": "kvm"})
	logs, tweak := observeOutages()
	started := time.Now()
	_, v := startReceiver(t, api, nodeA, uri, tweak)

	checkWatchOutage(t, logs, v, started, "unreachable", "connection refused", "API server")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	require.NoError(t, api.StartKubeAPIServer(ctx))
	back := time.Now()
	runVMI(t, api, "default", "a", nodeA)
	// The reflector's backoff has grown by now: up to 12.8 s between attempts.
	waitView(t, v, map[string]string{"default/a": "kvm"}, time.Minute)
	t.Logf("series served %v after kube-apiserver was back", time.Since(back).Round(time.Millisecond))
	checkWatchRecovered(t, logs, v)
}

func TestRBACDenialIsLoggedAndMeasuredUntilTheShippedRoleIsBound(t *testing.T) {
	verifyNoLeaks(t)
	api := startAPIServer(t)
	const user = "collector-without-role"
	kubeconfig, err := api.AddUser(user)
	require.NoError(t, err)
	uri := testDriverNode(t, map[string]string{"default_a": "kvm"})
	logs, tweak := observeOutages()
	started := time.Now()
	_, v := startReceiver(t, api, nodeA, uri, func(r *kubevirtReceiver) {
		tweak(r)
		t.Setenv("KUBECONFIG", kubeconfig)
	})

	checkWatchOutage(t, logs, v, started, "forbidden", "forbidden", "deploy/kubernetes/rbac.yaml")

	// What the hint says: the shipped ClusterRole, bound to the collector's identity.
	bindDocumentedClusterRole(t, api, user)
	runVMI(t, api, "default", "a", nodeA)
	waitView(t, v, map[string]string{"default/a": "kvm"}, time.Minute)
	checkWatchRecovered(t, logs, v)
}

func TestMissingCRDIsLoggedAndMeasuredUntilKubeVirtIsInstalled(t *testing.T) {
	verifyNoLeaks(t)
	api := startAPIServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	require.NoError(t, api.UninstallCRDs(ctx))
	uri := testDriverNode(t, map[string]string{"default_a": "kvm"})
	logs, tweak := observeOutages()
	started := time.Now()
	_, v := startReceiver(t, api, nodeA, uri, tweak)

	checkWatchOutage(t, logs, v, started, "crd_missing", "the server could not find the requested resource", "is KubeVirt installed?")

	require.NoError(t, api.InstallCRDs(ctx))
	runVMI(t, api, "default", "a", nodeA)
	waitView(t, v, map[string]string{"default/a": "kvm"}, time.Minute)
	checkWatchRecovered(t, logs, v)
}

func TestLauncherUnreachableIsLoggedOnceAndMeasuredUntilItIsBack(t *testing.T) {
	api := startAPIServer(t)
	node := testenv.MustStartNode(t, testenv.NodeOptions{NodeName: nodeA})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pod, err := node.StartLauncher(ctx, "default", "vm", "qemu")
	require.NoError(t, err)
	// The launcher's libvirtd crashes (its socket stays, refusing connections) and its
	// status file is out of the receiver's reach: only the socket could answer.
	require.NoError(t, pod.Libvirtd.KillDaemon(syscall.SIGKILL))
	away := pod.StatusFile() + ".away"
	require.NoError(t, os.Rename(pod.StatusFile(), away))
	require.NoError(t, api.CreateVMI(ctx, pod.Namespace, pod.Name))
	require.NoError(t, api.SetVMIStatus(ctx, pod.Namespace, pod.Name, pod.RunningStatus()))

	logs, tweak := observeOutages()
	started := time.Now()
	_, v := startReceiverWith(t, api, nodeA, LibvirtConfig{Source: SourceLauncher, PodsDir: node.PodsDir()}, tweak)

	const failed = "Failed to detect hypervisor; reporting unknown"
	e := waitLog(t, logs, failed, soon)
	t.Logf("logged %v after the receiver started", e.Time.Sub(started).Round(time.Millisecond))
	require.Equal(t, zapcore.WarnLevel, e.Level)
	fields := e.ContextMap()
	require.Equal(t, "default/vm", fields["vmi"])
	require.Contains(t, fields["error"], pod.SocketPath())
	require.Contains(t, fields["hint"], "DAC_OVERRIDE")
	waitView(t, v, map[string]string{"default/vm": "unknown"}, soon)
	// Retried after 0.2, 0.4, 0.8 s...: counted every time, logged once.
	waitSelf(t, v, "kubevirt.vmi.hypervisor.detection.failures{libvirt_unreachable}", soon, func(x float64) bool { return x >= 3 })
	require.Equal(t, 1, logs.FilterMessage(failed).Len(), "retries were logged again:\n%s", dumpLogs(logs))
	require.Zero(t, logs.FilterMessage(libvirtRecovered).Len())

	// libvirtd re-attaches to its running guest from the status file, so it goes back
	// first. The receiver learns of libvirtd's return from its reconnection.
	require.NoError(t, os.Rename(away, pod.StatusFile()))
	require.NoError(t, pod.Libvirtd.StartDaemon(ctx))
	waitView(t, v, map[string]string{"default/vm": "qemu-tcg"}, 30*time.Second)
	rec := waitLog(t, logs, libvirtRecovered, soon)
	require.Equal(t, zapcore.InfoLevel, rec.Level)
	require.GreaterOrEqual(t, rec.ContextMap()["failures"], int64(3))
}

// bindDocumentedClusterRole creates the ClusterRole README.md documents (the one
// deploy/kubernetes ships) and binds it to user.
func bindDocumentedClusterRole(t *testing.T, api *testenv.APIServer, user string) {
	t.Helper()
	role := *documentedClusterRole(t)
	require.NotEmpty(t, role.Rules, "no rules in README.md's ClusterRole")
	ctx := context.Background()
	rbac := api.Clientset.RbacV1()
	_, err := rbac.ClusterRoles().Create(ctx, &role, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = rbac.ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: role.Name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
}
