// Package e2e tests the built otelcol-kubevirt binary, with its shipped configuration,
// against a real kube-apiserver and a real libvirtd running real QEMU guests: through
// the Prometheus endpoint users scrape, a real Prometheus scraping it, and OTLP into a
// second instance of the binary. It also runs promtool on the shipped alert rules.
package e2e

import (
	"context"
	"os"
	"slices"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv"
)

const (
	node   = "worker-node-1"
	metric = "kubevirt_vmi_hypervisor_info"
)

func TestCollectorServesExactLinePerRunningVMIAndDropsStoppedOnes(t *testing.T) {
	bin := collectorBinary(t)
	api := testenv.MustStartAPIServer(t)
	lv := testenv.MustStartLibvirtd(t, testenv.LibvirtdOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// my-vm runs under KVM where this machine has it; tcg-vm always under TCG.
	myVMType, wantMyVM := "qemu", `kubevirt_vmi_hypervisor_info{hypervisor_type="qemu-tcg",name="my-vm",namespace="default",node="worker-node-1"} 1`
	if ok, why := lv.KVMUsable(); ok {
		myVMType, wantMyVM = "kvm", `kubevirt_vmi_hypervisor_info{hypervisor_type="kvm",name="my-vm",namespace="default",node="worker-node-1"} 1`
	} else {
		t.Logf("no KVM here (%s): default/my-vm runs under TCG", why)
	}
	wantTCG := `kubevirt_vmi_hypervisor_info{hypervisor_type="qemu-tcg",name="tcg-vm",namespace="default",node="worker-node-1"} 1`
	for name, typ := range map[string]string{"my-vm": myVMType, "tcg-vm": "qemu"} {
		if err := lv.StartGuest(ctx, "default_"+name, typ); err != nil {
			t.Fatal(err)
		}
		runVMI(ctx, t, api, "default", name)
	}
	// A VMI that is not Running yet has no series.
	if err := api.CreateVMI(ctx, "default", "pending-vm"); err != nil {
		t.Fatal(err)
	}
	if err := api.SetVMIStatus(ctx, "default", "pending-vm", testenv.VMIStatus{Phase: "Scheduled", NodeName: node}); err != nil {
		t.Fatal(err)
	}

	col := startCollector(ctx, t, bin, api, lv)
	waitForLines(ctx, t, col, wantMyVM, wantTCG)
	checkExposition(ctx, t, col)

	if err := api.SetVMIStatus(ctx, "default", "my-vm", testenv.VMIStatus{Phase: "Succeeded", NodeName: node}); err != nil {
		t.Fatal(err)
	}
	waitForLines(ctx, t, col, wantTCG)

	if err := api.DeleteVMI(ctx, "default", "tcg-vm"); err != nil {
		t.Fatal(err)
	}
	waitForLines(ctx, t, col)
}

// collectorBinary is the collector `make test` built. Run alone, without `make test`,
// the test is skipped rather than building the collector itself.
func collectorBinary(t *testing.T) string {
	t.Helper()
	bin := os.Getenv(testenv.CollectorBinEnv)
	if bin == "" {
		testenv.Unavailable(t, "%s is not set; `make test` builds the collector and sets it", testenv.CollectorBinEnv)
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s: %v", testenv.CollectorBinEnv, err)
	}
	return bin
}

func runVMI(ctx context.Context, t *testing.T, api *testenv.APIServer, ns, name string) {
	t.Helper()
	if err := api.CreateVMI(ctx, ns, name); err != nil {
		t.Fatal(err)
	}
	if err := api.SetVMIStatus(ctx, ns, name, testenv.VMIStatus{Phase: "Running", NodeName: node}); err != nil {
		t.Fatal(err)
	}
}

func startCollector(ctx context.Context, t *testing.T, bin string, api *testenv.APIServer, lv *testenv.Libvirtd) *testenv.Collector {
	t.Helper()
	return startCollectorWith(ctx, t, testenv.CollectorOptions{Bin: bin, Env: (&lab{api: api, lv: lv}).collectorEnv()})
}

// waitForLines polls the endpoint until its hypervisor lines are exactly want.
func waitForLines(ctx context.Context, t *testing.T, col *testenv.Collector, want ...string) {
	t.Helper()
	slices.Sort(want)
	var got []string
	err := wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, func(context.Context) (bool, error) {
		var err error
		got, err = col.Lines(ctx, metric)
		slices.Sort(got)
		return err == nil && slices.Equal(got, want), nil
	})
	if err != nil {
		t.Fatalf("endpoint lines:\n%q\nwant:\n%q", got, want)
	}
}
