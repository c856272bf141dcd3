// Command kubevirt-lab runs a local KubeVirt-like node and the collector watching it, so
// that anyone can see otelcol-kubevirt work without a cluster: a real kube-apiserver
// with VMIs in it, and a kubelet-style pods directory in which every running VMI has a
// virt-launcher-like pod: its own libvirtd (session mode, as an unprivileged user, its
// socket at the kubelet path) running a real QEMU guest, KVM where /dev/kvm works, TCG
// otherwise. bin/otelcol-kubevirt runs with the configuration the DaemonSet ships; only
// the node name, the pods directory and auth differ, through the environment.
//
// `make run` starts it; Ctrl-C or `make stop` tears everything down.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv"
)

// vm is one VMI of the lab and, when it runs, its launcher's guest.
type vm struct {
	namespace, name string
	domainType      string // "" for a VMI that is not running yet
}

func main() {
	bin := flag.String("collector", "bin/otelcol-kubevirt", "collector binary")
	node := flag.String("node", "worker-node-1", "node name the lab's VMIs run on")
	endpoint := flag.String("endpoint", "127.0.0.1:9464", "where the collector serves Prometheus metrics")
	pidFile := flag.String("pidfile", PIDFile(), "file holding the lab's pid, for `make stop`")
	flag.Parse()
	log.SetFlags(log.Ltime)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := writePID(*pidFile); err != nil {
		log.Fatal(err)
	}
	defer os.Remove(*pidFile)
	if err := run(ctx, *bin, *node, *endpoint); err != nil {
		os.Remove(*pidFile)
		log.Fatal(err)
	}
}

// PIDFile is where a running lab says who it is.
func PIDFile() string {
	return filepath.Join(os.TempDir(), "otelcol-kubevirt-lab.pid")
}

// writePID claims pidFile, refusing when another lab is still running: two labs would
// fight over the metrics port.
func writePID(pidFile string) error {
	if b, err := os.ReadFile(pidFile); err == nil {
		var pid int
		if _, err := fmt.Sscan(string(b), &pid); err == nil && syscall.Kill(pid, 0) == nil {
			return fmt.Errorf("a lab is already running (pid %d); stop it with `make stop`", pid)
		}
	}
	return os.WriteFile(pidFile, []byte(fmt.Sprintln(os.Getpid())), 0o644)
}

func run(ctx context.Context, bin, nodeName, endpoint string) error {
	dir, err := os.MkdirTemp("", "kubevirt-lab-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	start := time.Now()
	log.Print("starting etcd and kube-apiserver")
	api, err := testenv.StartAPIServer(ctx)
	if err != nil {
		return err
	}
	defer stopping("kube-apiserver", api.Stop)

	log.Printf("laying out node %s: a kubelet pods directory with one launcher pod per running VMI", nodeName)
	node, err := testenv.StartNode(ctx, testenv.NodeOptions{NodeName: nodeName})
	if err != nil {
		return err
	}
	defer stopping("launcher pods", node.Stop)

	accelerated := "kvm"
	if ok, why := testenv.KVMUsable(); !ok {
		accelerated = "qemu"
		log.Printf("no KVM here (%s): every guest runs under TCG", why)
	}
	vms := []vm{
		{"default", "my-vm", accelerated},
		{"legacy", "emulated-vm", "qemu"},
		{"default", "pending-vm", ""},
	}
	running := 0
	for _, v := range vms {
		if err := startVM(ctx, api, node, v); err != nil {
			return err
		}
		if v.domainType != "" {
			running++
		}
	}

	log.Print("starting the collector with cmd/otelcol-kubevirt/config.yaml")
	col, err := testenv.StartCollector(ctx, testenv.CollectorOptions{
		Bin:      bin,
		Dir:      dir,
		Endpoint: endpoint,
		Env: []string{
			"K8S_NODE_NAME=" + nodeName,
			"LIBVIRT_PODS_DIR=" + node.PodsDir(),
			"KUBEVIRT_AUTH_TYPE=kubeConfig",
			"KUBECONFIG=" + api.KubeconfigPath,
		},
	})
	if err != nil {
		return err
	}
	defer stopping("collector", col.Stop)

	lines, err := waitForSeries(ctx, col, running)
	if err != nil {
		return fmt.Errorf("%w; collector log: %s", err, col.LogPath)
	}
	fmt.Printf("\nThe lab is up after %s.\n\n", time.Since(start).Round(100*time.Millisecond))
	fmt.Printf("  metrics:    curl -s %s | grep kubevirt_vmi\n", col.MetricsURL)
	fmt.Printf("  kubectl:    KUBECONFIG=%s kubectl get vmi -A\n", api.KubeconfigPath)
	fmt.Printf("  pods dir:   %s\n", node.PodsDir())
	for _, p := range node.Launchers() {
		fmt.Printf("  virsh:      virsh -c 'qemu+unix:///session?socket=%s' dumpxml %s\n", p.SocketPath(), p.Domain())
	}
	fmt.Printf("  collector:  log in %s\n\n", col.LogPath)
	fmt.Printf("%s\n\nCtrl-C (or `make stop`) stops and cleans up.\n", strings.Join(lines, "\n"))
	<-ctx.Done()
	log.Print("stopping")
	return nil
}

// startVM creates the VMI and, for a running one, its launcher pod, and sets the
// status KubeVirt would.
func startVM(ctx context.Context, api *testenv.APIServer, node *testenv.Node, v vm) error {
	if err := api.CreateVMI(ctx, v.namespace, v.name); err != nil {
		return err
	}
	status := testenv.VMIStatus{Phase: "Pending"}
	if v.domainType != "" {
		pod, err := node.StartLauncher(ctx, v.namespace, v.name, v.domainType)
		if errors.Is(err, testenv.ErrKVMUnusable) {
			log.Printf("%v: falling back to TCG", err)
			pod, err = node.StartLauncher(ctx, v.namespace, v.name, "qemu")
		}
		if err != nil {
			return err
		}
		status = pod.RunningStatus()
		v.domainType = pod.DomainType
	}
	if err := api.SetVMIStatus(ctx, v.namespace, v.name, status); err != nil {
		return err
	}
	log.Printf("VMI %s/%s: %s %s", v.namespace, v.name, status.Phase, v.domainType)
	return nil
}

// waitForSeries polls the endpoint until it shows n hypervisor series.
func waitForSeries(ctx context.Context, col *testenv.Collector, n int) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var lines []string
	err := testenv.Poll(ctx, 100*time.Millisecond, func() (bool, error) {
		var err error
		lines, err = col.Lines(ctx, "kubevirt_vmi_hypervisor_info")
		return err == nil && len(lines) == n, nil
	})
	if err != nil {
		return nil, fmt.Errorf("the collector showed %d of %d series: %w", len(lines), n, err)
	}
	return lines, nil
}

func stopping(what string, stop func() error) {
	if err := stop(); err != nil {
		log.Printf("stopping %s: %v", what, err)
	}
}
