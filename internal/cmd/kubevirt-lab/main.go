// Command kubevirt-lab runs a KubeVirt-like Kubernetes node on this machine with the
// collector deployed on it as users deploy it, so that anyone can see
// otelcol-kubevirt work without a cluster of their own:
//
//   - a real single-node Kubernetes (internal/cluster): etcd, kube-apiserver,
//     kube-controller-manager, kube-scheduler, containerd, kubelet, kube-proxy;
//   - KubeVirt's part played by internal/lab: the VMI CRD, /dev/kvm through a device
//     plugin, and for every VMI a launcher pod running KubeVirt's virt-launcher,
//     which starts a real QEMU guest;
//   - the collector image built from the repository's Dockerfile (`make image`),
//     deployed with `kubectl apply -k deploy/kubernetes`, only the image overridden;
//   - two VMIs created with kubectl from internal/cmd/kubevirt-lab/vmis: one with
//     KVM, one emulated.
//
// It prints the kubeconfig, the collector's endpoint and its lines, and runs until
// Ctrl-C or `make stop`, then removes everything it made. `make run` builds what it
// needs and starts it.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/cluster"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/lab"
)

const hypervisorMetric = "kubevirt_vmi_hypervisor_info"

// startVMIs are the lab's first VMIs, created with `kubectl create -f`.
var startVMIs = []string{"internal/cmd/kubevirt-lab/vmis/my-vm.yaml", "internal/cmd/kubevirt-lab/vmis/emulated-vm.yaml"}

func main() {
	repo := flag.String("repo", ".", "the checkout: manifests, CRD and example VMIs")
	node := flag.String("node", cluster.DefaultNodeName, "the node's name")
	pidFile := flag.String("pidfile", filepath.Join(os.TempDir(), "otelcol-kubevirt-lab.pid"), "file holding the lab's pid, for `make stop`")
	flag.Parse()
	log.SetFlags(log.Ltime)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	images, err := lab.ImagesFromEnv()
	if err != nil {
		log.Fatal(err)
	}
	if err := writePID(*pidFile); err != nil {
		log.Fatal(err)
	}
	err = run(ctx, *repo, *node, images)
	os.Remove(*pidFile)
	if err != nil {
		log.Fatal(err)
	}
}

// writePID claims pidFile, refusing when another lab is still running.
func writePID(pidFile string) error {
	if b, err := os.ReadFile(pidFile); err == nil {
		var pid int
		if _, err := fmt.Sscan(string(b), &pid); err == nil && syscall.Kill(pid, 0) == nil {
			return fmt.Errorf("a lab is already running (pid %d); stop it with `make stop`", pid)
		}
	}
	return os.WriteFile(pidFile, []byte(fmt.Sprintln(os.Getpid())), 0o644)
}

func run(ctx context.Context, repo, node string, images []string) error {
	repo, err := filepath.Abs(repo)
	if err != nil {
		return err
	}
	start := time.Now()
	c, err := cluster.Start(ctx, cluster.Options{NodeName: node, Images: images, Progress: log.Printf})
	if err != nil {
		return err
	}
	defer func() {
		if err := c.Stop(); err != nil {
			log.Print(err)
		} else {
			log.Print("the node and everything on it are gone")
		}
	}()
	l, err := lab.Start(ctx, c, lab.Options{RepoRoot: repo, Progress: log.Printf})
	if err != nil {
		return err
	}
	defer l.Stop()

	log.Print("deploying the collector: kubectl apply -k deploy/kubernetes, image ", lab.CollectorImage)
	col, err := lab.DeployCollector(ctx, c, repo, lab.CollectorImage)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting
		}
		return err
	}
	for _, f := range startVMIs {
		if _, err := c.Kubectl(ctx, nil, "create", "-f", filepath.Join(repo, f)); err != nil {
			return err
		}
		log.Printf("kubectl create -f %s", f)
	}
	lines, err := waitForLines(ctx, col, len(startVMIs))
	if err != nil {
		return fmt.Errorf("%w\n  collector log: kubectl logs -n %s %s", err, lab.CollectorNamespace, col.Pod)
	}

	kubectlDir := filepath.Dir(c.KubectlPath())
	fmt.Printf(`
The lab is up after %s: node %s, the collector's DaemonSet pod %s.

  export KUBECONFIG=%s PATH=%s:$PATH
  kubectl get vmi -A -o wide
  curl -s %s | grep %s
  kubectl create -f %s   another VMI, with KVM
  kubectl create -f %s   migrates my-vm to a new launcher pod
  kubectl delete vmi -n default my-vm             its line goes within a second
  kubectl logs -n %s %s

%s

Ctrl-C (or `+"`make stop`"+`) stops it and removes everything.
`,
		time.Since(start).Round(100*time.Millisecond), node, col.Pod,
		c.Kubeconfig, kubectlDir,
		col.MetricsURL, "kubevirt_vmi", filepath.Join("internal", "cmd", "kubevirt-lab", "vmis", "another-vm.yaml"),
		filepath.Join("internal", "cmd", "kubevirt-lab", "vmis", "migrate-my-vm.yaml"),
		lab.CollectorNamespace, col.Pod, strings.Join(lines, "\n"))
	<-ctx.Done()
	log.Print("stopping")
	return nil
}

// waitForLines polls the collector's endpoint until it shows n hypervisor series.
func waitForLines(ctx context.Context, col *lab.Collector, n int) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		lines, err := col.Lines(ctx, hypervisorMetric)
		if err == nil && len(lines) == n {
			return lines, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("the collector showed %d of %d series (%v): %w", len(lines), n, err, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
