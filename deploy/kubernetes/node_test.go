package manifests

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/yaml"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/cluster"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/lab"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv"
)

const (
	repoRoot         = "../.."
	hypervisorMetric = "kubevirt_vmi_hypervisor_info"
	vmisDir          = repoRoot + "/internal/cmd/kubevirt-lab/vmis"
	// capDACOverride is CAP_DAC_OVERRIDE's bit in /proc/<pid>/status.
	capDACOverride = 1 << 1
)

// realNode is what the tests below share: one node, KubeVirt's stand-in, and the
// collector as the install path being checked deployed it. Starting it takes about a
// minute.
type realNode struct {
	c   *cluster.Cluster
	lab *lab.Lab
	col *lab.Collector
}

// installPath is one way users deploy the collector, as a user runs it.
type installPath struct {
	name string
	// install deploys the collector and returns its Ready pod on the node.
	install func(ctx context.Context, t *testing.T, n *realNode) *lab.Collector
	// uninstall removes everything install made, and returns once it is gone.
	uninstall func(ctx context.Context, t *testing.T, n *realNode)
	// reapply deploys it again over a changed DaemonSet; nil for a path that need not
	// prove what DetectionNeedsDACOverride does again.
	reapply func(ctx context.Context, n *realNode) error
}

// kustomizePath is `kubectl apply -k deploy/kubernetes`, only the image set.
func kustomizePath() installPath {
	return installPath{
		name: "KubectlApplyK",
		install: func(ctx context.Context, t *testing.T, n *realNode) *lab.Collector {
			t.Helper()
			col, err := lab.DeployCollector(ctx, n.c, repoRoot, lab.CollectorImage)
			if err != nil {
				t.Fatal(err)
			}
			return col
		},
		uninstall: func(ctx context.Context, t *testing.T, n *realNode) {
			t.Helper()
			// What deploy/kubernetes made: its namespace, with everything in it, and
			// the cluster-scoped RBAC. kubectl delete waits for them to be gone.
			n.kubectl(t, ctx, "delete", "namespace", lab.CollectorNamespace, "--ignore-not-found")
			n.kubectl(t, ctx, "delete", "clusterrole,clusterrolebinding", lab.CollectorName, "--ignore-not-found")
		},
		reapply: func(ctx context.Context, n *realNode) error {
			return lab.ApplyCollector(ctx, n.c, repoRoot, lab.CollectorImage)
		},
	}
}

func startRealNode(t *testing.T) *realNode {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Unavailable(t, "the real node needs root")
	}
	// `make test` names all of them; a plain `go test` none.
	env := []string{"KUBEBUILDER_ASSETS", "CONTAINERD_ASSETS", "PROMETHEUS_ASSETS", "HELM_ASSETS", lab.CollectorImageEnv, lab.LabImagesEnv}
	var missing []string
	for _, e := range env {
		if os.Getenv(e) == "" {
			missing = append(missing, e)
		}
	}
	if len(missing) == len(env) {
		testenv.Unavailable(t, "the real node needs its binaries and images, which `make test` builds and names")
	}
	if len(missing) > 0 {
		t.Fatalf("%s not set (`make test` sets them)", strings.Join(missing, ", "))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	c, l := lab.StartTestNode(ctx, t, repoRoot)
	return &realNode{c: c, lab: l}
}

// TestDaemonSetOnRealNode deploys the collector, with the image built from the
// repository's Dockerfile, on a real kubelet node with KubeVirt-like launcher pods,
// once by each install path in turn on the same node (deploy/kubernetes with
// `kubectl apply -k`, unchanged but for the image; the Helm chart of deploy/helm with
// `helm install`, only the image set), removing it in between. For each it checks
// what users get: the exact lines for VMIs created with kubectl, their prompt
// removal, the securityContext and mounts as a container runtime enforces them, Pod
// Security, and a Prometheus discovering the collector with the README's scrape
// configuration.
func TestDaemonSetOnRealNode(t *testing.T) {
	n := startRealNode(t)
	for _, p := range []installPath{kustomizePath(), helmPath()} {
		t.Run(p.name, func(t *testing.T) { n.checkInstallPath(t, p) })
	}
}

// checkInstallPath installs the collector by p, runs every check, and leaves the
// node as it found it: no VMI, no collector.
func (n *realNode) checkInstallPath(t *testing.T, p installPath) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	defer n.reset(t, p)
	n.col = p.install(ctx, t, n)
	node := n.c.NodeName()
	accelerated := "kvm"
	if !n.lab.KVM {
		accelerated = "qemu-tcg" // no usable /dev/kvm on this machine
	}
	line := func(typ, ns, name string) string {
		return fmt.Sprintf(`%s{hypervisor_type=%q,name=%q,namespace=%q,node=%q} 1`, hypervisorMetric, typ, name, ns, node)
	}

	// The VMIs come after the collector: their launcher pods, and the emptyDirs the
	// collector reads, are new to it.
	t.Run("ExactLinesForVMIsCreatedWithKubectl", func(t *testing.T) {
		n.kubectl(t, ctx, "create", "-f", vmisDir+"/my-vm.yaml", "-f", vmisDir+"/emulated-vm.yaml")
		n.waitLines(t, ctx, line(accelerated, "default", "my-vm"), line("qemu-tcg", "legacy", "emulated-vm"))
	})

	t.Run("LauncherMountsMadeLaterReachTheCollector", func(t *testing.T) {
		// The VMI was created after DeployCollector saw the collector Ready; the API
		// server's timestamps have whole seconds.
		started := n.collectorStarted(t, ctx)
		pod := n.launcher(t, ctx, "default", "my-vm")
		if pod.CreationTimestamp.Time.Before(started.Truncate(time.Second)) {
			t.Fatalf("launcher pod created at %s, before the collector started at %s", pod.CreationTimestamp, started)
		}
		// The launcher's libvirt-runtime is a tmpfs kubelet mounted when the pod
		// started: the collector sees it as a mount of its own /pods only through
		// HostToContainer propagation.
		want := "/pods/" + string(pod.UID) + "/volumes/kubernetes.io~empty-dir/libvirt-runtime"
		mounts := n.exec(t, ctx, "cat", "/proc/1/mountinfo")
		if !mountedAs(mounts, want, "tmpfs") {
			t.Errorf("the collector's mount namespace has no tmpfs at %s:\n%s", want, mounts)
		}
	})

	t.Run("OnlyDACOverride", func(t *testing.T) {
		status := n.exec(t, ctx, "cat", "/proc/1/status")
		for _, field := range []string{"CapEff", "CapPrm", "CapBnd"} {
			got, err := capField(status, field)
			if err != nil {
				t.Fatal(err)
			}
			if got != capDACOverride {
				t.Errorf("%s = %#x, want only CAP_DAC_OVERRIDE (%#x)", field, got, capDACOverride)
			}
		}
	})

	t.Run("GOMEMLIMITReachesTheCollector", func(t *testing.T) {
		// ~80% of the DaemonSet's 256Mi (see daemonset.yaml).
		environ := n.exec(t, ctx, "cat", "/proc/1/environ")
		if !strings.Contains("\x00"+environ, "\x00GOMEMLIMIT=200MiB\x00") {
			t.Errorf("the collector's environment has no GOMEMLIMIT=200MiB: %q", environ)
		}
	})

	t.Run("PodsIsReadOnly", func(t *testing.T) {
		out, err := n.c.Kubectl(ctx, nil, "exec", "-n", lab.CollectorNamespace, n.col.Pod, "--", "touch", "/pods/written-by-the-collector")
		if err == nil || !strings.Contains(err.Error(), "Read-only file system") {
			t.Errorf("touch /pods/... in the collector: %s %v, want a read-only file system error", out, err)
		}
	})

	t.Run("PodSecurityAdmitsItOnlyAsPrivileged", func(t *testing.T) {
		ns, err := n.c.Clientset.CoreV1().Namespaces().Get(ctx, lab.CollectorNamespace, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := ns.Labels["pod-security.kubernetes.io/enforce"]; got != "privileged" {
			t.Errorf("namespace enforce level %q, want privileged", got)
		}
		// The level is needed: the same pod in a baseline namespace is refused.
		baseline := "psa-baseline-" + strings.ToLower(p.name)
		n.kubectl(t, ctx, "create", "namespace", baseline)
		n.kubectl(t, ctx, "label", "namespace", baseline, "pod-security.kubernetes.io/enforce=baseline")
		pod, err := n.c.Clientset.CoreV1().Pods(lab.CollectorNamespace).Get(ctx, n.col.Pod, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		probe := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "psa-probe", Namespace: baseline}, Spec: pod.Spec}
		probe.Spec.NodeName = ""
		// Admission looks the service account up before Pod Security: use the
		// namespace's own, once kube-controller-manager has made it.
		probe.Spec.ServiceAccountName, probe.Spec.DeprecatedServiceAccount = "default", ""
		if err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(context.Context) (bool, error) {
			_, err := n.c.Clientset.CoreV1().ServiceAccounts(baseline).Get(ctx, "default", metav1.GetOptions{})
			return err == nil, nil
		}); err != nil {
			t.Fatal(err)
		}
		_, err = n.c.Clientset.CoreV1().Pods(baseline).Create(ctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err == nil || !strings.Contains(err.Error(), "violates PodSecurity") {
			t.Errorf("the collector's pod in a baseline namespace: err = %v, want a PodSecurity violation", err)
		}
	})

	t.Run("PrometheusDiscoversTheCollectorWithTheREADMEConfig", func(t *testing.T) {
		prom, err := testenv.StartPrometheus(ctx, testenv.PrometheusOptions{
			// Debian's Prometheus has no Kubernetes service discovery.
			Bin:           filepath.Join(os.Getenv("PROMETHEUS_ASSETS"), "prometheus"),
			Dir:           t.TempDir(),
			ScrapeConfigs: readmeScrapeConfigs(t, n.c.Kubeconfig),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = prom.Stop() })
		instance := strings.TrimSuffix(strings.TrimPrefix(n.col.MetricsURL, "http://"), "/metrics")
		var got []testenv.Sample
		err = wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(context.Context) (bool, error) {
			got, err = prom.Query(ctx, hypervisorMetric)
			return err == nil && len(got) == 2, nil
		})
		if err != nil {
			t.Fatalf("Prometheus has %v, want the two series: %v (log %s)", got, err, prom.LogPath)
		}
		for _, s := range got {
			if s.Labels["job"] != "otelcol-kubevirt" || s.Labels["instance"] != instance || s.Labels["node"] != node || s.Value != 1 {
				t.Errorf("series %v: want job otelcol-kubevirt, instance %s, node %s, value 1", s.Labels, instance, node)
			}
		}
	})

	t.Run("NewVMIAppearsWithItsType", func(t *testing.T) {
		n.kubectl(t, ctx, "create", "-f", vmisDir+"/another-vm.yaml")
		n.waitLines(t, ctx, line(accelerated, "default", "my-vm"), line("qemu-tcg", "legacy", "emulated-vm"), line(accelerated, "default", "another-vm"))
	})

	t.Run("StoppedGuestSucceedsAndGoes", func(t *testing.T) {
		pod := n.launcher(t, ctx, "default", "another-vm")
		// The launcher exits as soon as its guest stops, and its container's end may
		// kill this exec session before virsh returns (exit code 137); what follows
		// checks that the guest did stop.
		out, err := n.c.Kubectl(ctx, nil, "exec", "-n", "default", pod.Name, "--", "virsh", "destroy", "default_another-vm")
		if err != nil && !strings.Contains(err.Error(), "exit code 137") {
			t.Fatalf("virsh destroy: %s %v", out, err)
		}
		destroyed := time.Now()
		n.waitLines(t, ctx, line(accelerated, "default", "my-vm"), line("qemu-tcg", "legacy", "emulated-vm"))
		t.Logf("line gone %s after the guest was destroyed", time.Since(destroyed).Round(time.Millisecond))
		err = wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(context.Context) (bool, error) {
			out, err := n.c.Kubectl(ctx, nil, "get", "vmi", "-n", "default", "another-vm", "-o", "jsonpath={.status.phase}")
			return err == nil && string(out) == "Succeeded", nil
		})
		if err != nil {
			t.Errorf("VMI another-vm did not become Succeeded: %v", err)
		}
	})

	t.Run("DeletedVMIGoesWithinASecond", func(t *testing.T) {
		begin := time.Now()
		n.kubectl(t, ctx, "delete", "vmi", "-n", "default", "my-vm")
		deleted := time.Now()
		want := []string{line("qemu-tcg", "legacy", "emulated-vm")}
		var lines []string
		err := wait.PollUntilContextCancel(ctx, 10*time.Millisecond, true, func(context.Context) (bool, error) {
			var err error
			lines, err = n.col.Lines(ctx, hypervisorMetric)
			return err == nil && slices.Equal(lines, want), nil
		})
		gone := time.Now()
		if err != nil {
			t.Fatalf("lines %q, want %q: %v", lines, want, err)
		}
		t.Logf("line gone %s after kubectl delete returned (%s after it started)",
			gone.Sub(deleted).Round(time.Millisecond), gone.Sub(begin).Round(time.Millisecond))
		if gone.Sub(deleted) > time.Second {
			t.Errorf("the line took %s to go after the VMI was deleted, want at most 1s", gone.Sub(deleted))
		}
	})

	t.Run("WedgedCollectorIsRestarted", func(t *testing.T) {
		n.checkWedgedCollectorIsRestarted(t, ctx, line("qemu-tcg", "legacy", "emulated-vm"))
	})

	if p.reapply == nil {
		// DetectionNeedsDACOverride proves a property of the image and its
		// privileges, which one install path shows as well as two.
		return
	}
	// Last: it replaces the collector's pod twice.
	t.Run("DetectionNeedsDACOverride", func(t *testing.T) {
		n.kubectl(t, ctx, "patch", "daemonset", "-n", lab.CollectorNamespace, lab.CollectorName, "--type=json",
			`-p=[{"op":"replace","path":"/spec/template/spec/containers/0/securityContext/capabilities/add","value":[]}]`)
		col, err := lab.WaitCollector(ctx, n.c)
		if err != nil {
			t.Fatal(err)
		}
		n.col = col
		n.waitLines(t, ctx, line("unknown", "legacy", "emulated-vm"))
		// The receiver's own metrics follow a change within a second (README).
		soon, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		var failures []string
		err = wait.PollUntilContextCancel(soon, 100*time.Millisecond, true, func(context.Context) (bool, error) {
			failures, err = col.Lines(soon, "kubevirt_vmi_hypervisor_detection_failures_total")
			return err == nil && slices.ContainsFunc(failures, func(l string) bool { return strings.Contains(l, `reason="libvirt_unreachable"`) }), nil
		})
		if err != nil {
			t.Errorf("failure counters %q (%v), want libvirt_unreachable within 5s", failures, err)
		}

		// Back to the shipped DaemonSet: detection works again.
		if err := p.reapply(ctx, n); err != nil {
			t.Fatal(err)
		}
		if n.col, err = lab.WaitCollector(ctx, n.c); err != nil {
			t.Fatal(err)
		}
		n.waitLines(t, ctx, line("qemu-tcg", "legacy", "emulated-vm"))
	})
}

// reset removes what checkInstallPath made, failed or not: the example VMIs (and the
// namespace emulated-vm.yaml creates), their launcher pods, and the collector.
func (n *realNode) reset(t *testing.T, p installPath) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if t.Failed() {
		logs, _ := n.c.Kubectl(ctx, nil, "logs", "-n", lab.CollectorNamespace, "daemonset/"+lab.CollectorName, "--tail=40")
		t.Logf("collector log:\n%s", logs)
	}
	if _, err := n.c.Kubectl(ctx, nil, "delete", "--ignore-not-found",
		"-f", vmisDir+"/my-vm.yaml", "-f", vmisDir+"/emulated-vm.yaml", "-f", vmisDir+"/another-vm.yaml"); err != nil {
		t.Errorf("deleting the VMIs: %v", err)
	}
	// Launcher pods go after their VMIs (owner references), and the collector's
	// after uninstall.
	gone := func(ns, selector string) {
		t.Helper()
		var left int
		err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(context.Context) (bool, error) {
			pods, err := n.c.Clientset.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
			if err != nil {
				return false, err
			}
			left = len(pods.Items)
			return left == 0, nil
		})
		if err != nil {
			t.Errorf("%d pods %q left in namespace %q: %v", left, selector, ns, err)
		}
	}
	gone("", "kubevirt.io/created-by") // the lab's launcher pods
	p.uninstall(ctx, t, n)
	gone(lab.CollectorNamespace, "app.kubernetes.io/name="+lab.CollectorName)
	n.col = nil
}

func (n *realNode) kubectl(t *testing.T, ctx context.Context, args ...string) string {
	t.Helper()
	out, err := n.c.Kubectl(ctx, nil, args...)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// exec runs a command in the collector's container.
func (n *realNode) exec(t *testing.T, ctx context.Context, command ...string) string {
	t.Helper()
	return n.kubectl(t, ctx, append([]string{"exec", "-n", lab.CollectorNamespace, n.col.Pod, "--"}, command...)...)
}

// waitLines polls the collector until its hypervisor lines are exactly want.
func (n *realNode) waitLines(t *testing.T, ctx context.Context, want ...string) {
	t.Helper()
	slices.Sort(want)
	var got []string
	err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(context.Context) (bool, error) {
		var err error
		got, err = n.col.Lines(ctx, hypervisorMetric)
		slices.Sort(got)
		return err == nil && slices.Equal(got, want), nil
	})
	if err != nil {
		t.Fatalf("the collector shows\n  %s\nwant\n  %s\n(%v)", strings.Join(got, "\n  "), strings.Join(want, "\n  "), err)
	}
}

func (n *realNode) collectorStarted(t *testing.T, ctx context.Context) time.Time {
	t.Helper()
	pod, err := n.c.Clientset.CoreV1().Pods(lab.CollectorNamespace).Get(ctx, n.col.Pod, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range pod.Status.ContainerStatuses {
		if s.State.Running != nil {
			return s.State.Running.StartedAt.Time
		}
	}
	t.Fatalf("the collector's container is not running: %+v", pod.Status.ContainerStatuses)
	return time.Time{}
}

// launcher returns the VMI's launcher pod: the one its status.activePods names.
func (n *realNode) launcher(t *testing.T, ctx context.Context, ns, name string) *corev1.Pod {
	t.Helper()
	out := n.kubectl(t, ctx, "get", "vmi", "-n", ns, name, "-o", "jsonpath={.status.activePods}")
	var active map[string]string
	if err := yaml.Unmarshal([]byte(out), &active); err != nil || len(active) != 1 {
		t.Fatalf("VMI %s/%s has activePods %q (%v), want one", ns, name, out, err)
	}
	pods, err := n.c.Clientset.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range pods.Items {
		if _, ok := active[string(p.UID)]; ok {
			return &pods.Items[i]
		}
	}
	t.Fatalf("no pod of VMI %s/%s's activePods %v", ns, name, active)
	return nil
}

// mountedAs says whether mountinfo has a mount at mountPoint of file system fstype.
func mountedAs(mountinfo, mountPoint, fstype string) bool {
	for _, line := range strings.Split(mountinfo, "\n") {
		// <id> <parent> <dev> <root> <mount point> <options> ... - <fstype> <source> <super options>
		fields := strings.Fields(line)
		sep := slices.Index(fields, "-")
		if len(fields) > 4 && sep > 0 && sep+1 < len(fields) && fields[4] == mountPoint && fields[sep+1] == fstype {
			return true
		}
	}
	return false
}

// capField reads a capability set (CapEff, CapPrm, ...) from /proc/<pid>/status.
func capField(status, field string) (uint64, error) {
	m := regexp.MustCompile(`(?m)^` + field + `:\s*([0-9a-f]+)$`).FindStringSubmatch(status)
	if m == nil {
		return 0, fmt.Errorf("no %s in:\n%s", field, status)
	}
	return strconv.ParseUint(m[1], 16, 64)
}

// readmeScrapeConfigs returns the scrape_configs of the README's Prometheus example,
// with each Kubernetes service discovery given kubeconfig: the Prometheus here runs
// outside the cluster, where a Prometheus in it would use its service account.
func readmeScrapeConfigs(t *testing.T, kubeconfig string) string {
	t.Helper()
	readme, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```yaml\n(scrape_configs:\n.*?)```").FindSubmatch(readme)
	if m == nil {
		t.Fatal("README.md has no ```yaml block starting with scrape_configs:")
	}
	var doc struct {
		ScrapeConfigs []map[string]any `json:"scrape_configs"`
	}
	if err := yaml.Unmarshal(m[1], &doc); err != nil {
		t.Fatalf("README.md's scrape_configs: %v", err)
	}
	for _, job := range doc.ScrapeConfigs {
		sds, _ := job["kubernetes_sd_configs"].([]any)
		if len(sds) == 0 {
			t.Fatalf("README.md's job %v has no kubernetes_sd_configs", job["job_name"])
		}
		for _, sd := range sds {
			sd.(map[string]any)["kubeconfig_file"] = kubeconfig
		}
	}
	out, err := yaml.Marshal(doc.ScrapeConfigs)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}
