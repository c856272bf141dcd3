package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/cluster"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/lab"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv/scrape"
)

// TestLabAsMakeRunsIt runs the lab as `make run` does and uses what it prints as a
// user would: the lines of the DaemonSet's pod, then the printed KUBECONFIG and
// kubectl to create another VMI, whose line must appear. Then it kills the lab with
// SIGKILL, leaving the teardown to its watchdog: nothing may be left on the host.
func TestLabAsMakeRunsIt(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Unavailable(t, "the lab needs root")
	}
	if _, err := lab.ImagesFromEnv(); err != nil || os.Getenv("KUBEBUILDER_ASSETS") == "" || os.Getenv("CONTAINERD_ASSETS") == "" {
		testenv.Unavailable(t, "the lab needs the binaries and images `make test` builds and names (%v)", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	before, release, err := cluster.HoldHost(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(release)
	bin := filepath.Join(t.TempDir(), "kubevirt-lab")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	repo, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, bin, "-pidfile", filepath.Join(t.TempDir(), "lab.pid"))
	cmd.Dir = repo
	cmd.Stderr = &logWriter{t: t}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	t.Cleanup(func() {
		if !killed {
			_ = cmd.Process.Signal(syscall.SIGTERM)
		}
		_ = cmd.Wait()
	})

	// What it prints once up, up to its last line.
	var printed []string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		printed = append(printed, sc.Text())
		if strings.HasPrefix(sc.Text(), "Ctrl-C") {
			break
		}
	}
	if len(printed) == 0 || !strings.HasPrefix(printed[len(printed)-1], "Ctrl-C") {
		t.Fatalf("the lab did not come up; it printed:\n%s", strings.Join(printed, "\n"))
	}
	accelerated := "kvm"
	if f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0); err != nil {
		accelerated = "qemu-tcg"
	} else {
		f.Close()
	}
	line := func(typ, ns, name string) string {
		return fmt.Sprintf(`kubevirt_vmi_hypervisor_info{hypervisor_type=%q,name=%q,namespace=%q,node=%q} 1`, typ, name, ns, cluster.DefaultNodeName)
	}
	for _, want := range []string{line(accelerated, "default", "my-vm"), line("qemu-tcg", "legacy", "emulated-vm")} {
		if !slices.Contains(printed, want) {
			t.Errorf("the lab did not print %s; it printed:\n%s", want, strings.Join(printed, "\n"))
		}
	}
	env := regexp.MustCompile(`export KUBECONFIG=(\S+) PATH=(\S+):\$PATH`).FindStringSubmatch(strings.Join(printed, "\n"))
	metrics := regexp.MustCompile(`curl -s (\S+) `).FindStringSubmatch(strings.Join(printed, "\n"))
	if env == nil || metrics == nil {
		t.Fatalf("no KUBECONFIG line or endpoint in:\n%s", strings.Join(printed, "\n"))
	}

	kubectl := exec.CommandContext(ctx, filepath.Join(env[2], "kubectl"), "create", "-f", "internal/cmd/kubevirt-lab/vmis/another-vm.yaml")
	kubectl.Dir = repo
	kubectl.Env = append(os.Environ(), "KUBECONFIG="+env[1])
	if out, err := kubectl.CombinedOutput(); err != nil {
		t.Fatalf("kubectl create: %v\n%s", err, out)
	}
	want := line(accelerated, "default", "another-vm")
	var lines []string
	if err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(context.Context) (bool, error) {
		lines, _ = scrape.Lines(ctx, metrics[1], "kubevirt_vmi_hypervisor_info")
		return slices.Contains(lines, want), nil
	}); err != nil {
		t.Fatalf("%s never appeared at %s; it serves %q", want, metrics[1], lines)
	}

	// The printed migration: my-vm moves to a new launcher pod, its line stays.
	migrate := regexp.MustCompile(`kubectl create -f (\S+)\s+migrates`).FindStringSubmatch(strings.Join(printed, "\n"))
	if migrate == nil {
		t.Fatalf("no migration command in:\n%s", strings.Join(printed, "\n"))
	}
	kubectl = exec.CommandContext(ctx, filepath.Join(env[2], "kubectl"), "create", "-f", migrate[1])
	kubectl.Dir = repo
	kubectl.Env = append(os.Environ(), "KUBECONFIG="+env[1])
	if out, err := kubectl.CombinedOutput(); err != nil {
		t.Fatalf("kubectl create: %v\n%s", err, out)
	}
	var phase []byte
	if err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(context.Context) (bool, error) {
		get := exec.CommandContext(ctx, filepath.Join(env[2], "kubectl"), "get", "vmim", "-n", "default", "migrate-my-vm", "-o", "jsonpath={.status.phase}")
		get.Env = kubectl.Env
		phase, _ = get.Output()
		return string(phase) == "Succeeded", nil
	}); err != nil {
		t.Fatalf("the printed migration is %q, not Succeeded (%v)", phase, err)
	}
	lines, err = scrape.Lines(ctx, metrics[1], "kubevirt_vmi_hypervisor_info")
	if want := line(accelerated, "default", "my-vm"); err != nil || !slices.Contains(lines, want) {
		t.Fatalf("after the migration %s serves %q (%v), want %s among them", metrics[1], lines, err, want)
	}

	// A lab killed outright: its watchdog tears the node down.
	killed = true
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	var left []string
	teardown, stop := context.WithTimeout(ctx, time.Minute)
	defer stop()
	if err := wait.PollUntilContextCancel(teardown, 200*time.Millisecond, true, func(context.Context) (bool, error) {
		left, err = before.Leftovers()
		return len(left) == 0, err
	}); err != nil {
		t.Fatalf("a minute after the lab was killed, the host still has (%v):\n  %s", err, strings.Join(left, "\n  "))
	}
}

// logWriter passes the lab's log to the test's.
type logWriter struct{ t *testing.T }

func (w *logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
