package manifests

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/lab"
)

// checkWedgedCollectorIsRestarted stops the collector's process where it runs (SIGSTOP
// from the host: a hung process, which answers nothing, not even its health_check) and
// expects the kubelet's liveness probe to restart the container, after which the
// collector serves want again. SIGSTOP has to come from outside the container: the
// collector is its PID 1, which ignores signals from inside its PID namespace.
func (n *realNode) checkWedgedCollectorIsRestarted(t *testing.T, ctx context.Context, want ...string) {
	t.Helper()
	before, uid := n.restarts(t, ctx)
	pid, err := collectorHostPID(uid)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	// Three failed probes, ten seconds apart, then the kubelet kills the container:
	// well within two minutes.
	restartCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	err = wait.PollUntilContextCancel(restartCtx, time.Second, true, func(context.Context) (bool, error) {
		now, _ := n.restarts(t, ctx)
		return now > before, nil
	})
	if err != nil {
		_ = syscall.Kill(pid, syscall.SIGCONT)
		t.Fatalf("the wedged collector was not restarted (%v)", err)
	}
	t.Logf("the kubelet restarted the wedged collector %s after SIGSTOP", time.Since(stopped).Round(time.Second))
	// The same pod, so the same endpoint, with a new process behind it.
	n.waitLines(t, ctx, want...)
}

// restarts is the restart count of the collector's container, and its pod's UID.
func (n *realNode) restarts(t *testing.T, ctx context.Context) (int32, string) {
	t.Helper()
	pod, err := n.c.Clientset.CoreV1().Pods(lab.CollectorNamespace).Get(ctx, n.col.Pod, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range pod.Status.ContainerStatuses {
		if s.Name == lab.CollectorName {
			return s.RestartCount, string(pod.UID)
		}
	}
	t.Fatalf("the collector pod has no container %s: %+v", lab.CollectorName, pod.Status.ContainerStatuses)
	return 0, ""
}

// collectorHostPID finds, in the host's /proc, the collector process of the pod whose
// UID is podUID: the image's entrypoint in a cgroup named after the pod.
func collectorHostPID(podUID string) (int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	// The kubelet names pod cgroups with the UID, dashes as underscores under systemd.
	uids := []string{podUID, strings.ReplaceAll(podUID, "-", "_")}
	var found []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err != nil || filepath.Base(exe) != "otelcol-kubevirt" {
			continue
		}
		cg, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cgroup"))
		if err != nil {
			continue
		}
		for _, u := range uids {
			if strings.Contains(string(cg), u) {
				found = append(found, pid)
				break
			}
		}
	}
	if len(found) != 1 {
		return 0, fmt.Errorf("collector processes of pod %s on the host: %v, want one", podUID, found)
	}
	return found[0], nil
}
