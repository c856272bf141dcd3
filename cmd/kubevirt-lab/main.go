// Command kubevirt-lab runs a local KubeVirt-like node and the collector watching it, so
// that anyone can see otelcol-kubevirt work without a cluster: a real kube-apiserver
// with VMIs in it, a real libvirtd running real QEMU guests (KVM where /dev/kvm works,
// TCG otherwise), and bin/otelcol-kubevirt with its shipped configuration. `make run`
// starts it; Ctrl-C tears everything down.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv"
)

// vm is one VMI of the lab and, when it runs, its guest.
type vm struct {
	namespace, name string
	phase           string
	domainType      string // libvirt domain type; "" for a VMI that has no domain
}

func main() {
	bin := flag.String("collector", "bin/otelcol-kubevirt", "collector binary")
	node := flag.String("node", "worker-node-1", "node name the lab's VMIs run on")
	endpoint := flag.String("endpoint", "127.0.0.1:9464", "where the collector serves Prometheus metrics")
	flag.Parse()
	log.SetFlags(log.Ltime)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *bin, *node, *endpoint); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, bin, node, endpoint string) error {
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

	log.Print("starting libvirtd (session mode, unprivileged, private socket: like a virt-launcher)")
	lv, err := testenv.StartLibvirtd(ctx, testenv.LibvirtdOptions{CapsCacheDir: testenv.DefaultCapsCacheDir()})
	if err != nil {
		return err
	}
	defer stopping("libvirtd and its guests", lv.Stop)

	accelerated := "qemu"
	if ok, why := lv.KVMUsable(); ok {
		accelerated = "kvm"
	} else {
		log.Printf("no KVM here (%s): every guest runs under TCG", why)
	}
	vms := []vm{
		{"default", "my-vm", "Running", accelerated},
		{"legacy", "emulated-vm", "Running", "qemu"},
		{"default", "pending-vm", "Pending", ""},
	}
	for _, v := range vms {
		if err := startVM(ctx, api, lv, node, v); err != nil {
			return err
		}
	}

	log.Print("starting the collector with cmd/otelcol-kubevirt/config.yaml")
	col, err := testenv.StartCollector(ctx, testenv.CollectorOptions{
		Bin:      bin,
		Dir:      dir,
		Endpoint: endpoint,
		Env: []string{
			"K8S_NODE_NAME=" + node,
			"KUBEVIRT_AUTH_TYPE=kubeConfig",
			"KUBECONFIG=" + api.KubeconfigPath,
			"LIBVIRT_URI=" + lv.URI(),
		},
	})
	if err != nil {
		return err
	}
	defer stopping("collector", col.Stop)

	lines, err := waitForSeries(ctx, col, 2)
	if err != nil {
		return fmt.Errorf("%w; collector log: %s", err, col.LogPath)
	}
	fmt.Printf("\nThe lab is up after %s.\n\n", time.Since(start).Round(100*time.Millisecond))
	fmt.Printf("  metrics:    curl -s %s | grep kubevirt_vmi\n", col.MetricsURL)
	fmt.Printf("  kubectl:    KUBECONFIG=%s kubectl get vmi -A\n", api.KubeconfigPath)
	fmt.Printf("  virsh:      virsh -c '%s' list\n", lv.URI())
	fmt.Printf("  collector:  log in %s\n\n", col.LogPath)
	fmt.Printf("%s\n\nPress Ctrl-C to stop and clean up.\n", strings.Join(lines, "\n"))
	<-ctx.Done()
	log.Print("stopping")
	return nil
}

func startVM(ctx context.Context, api *testenv.APIServer, lv *testenv.Libvirtd, node string, v vm) error {
	if v.domainType != "" {
		if err := lv.StartGuest(ctx, v.namespace+"_"+v.name, v.domainType); err != nil {
			return err
		}
	}
	if err := api.CreateVMI(ctx, v.namespace, v.name); err != nil {
		return err
	}
	st := testenv.VMIStatus{Phase: v.phase}
	if v.phase == "Running" {
		st.NodeName = node
	}
	if err := api.SetVMIStatus(ctx, v.namespace, v.name, st); err != nil {
		return err
	}
	log.Printf("VMI %s/%s: %s %s", v.namespace, v.name, v.phase, v.domainType)
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
