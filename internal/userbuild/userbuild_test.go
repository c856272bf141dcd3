// Package userbuild builds a collector with the kubevirt receiver the way a user
// does, from testdata/user-builder-config.yaml with ocb and no replaces, and runs it:
// the receiver's module and the harness module its tests import come from zips made
// as the module proxy makes them, so what a release publishes is what gets built.
package userbuild

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/module"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv"
)

const (
	ownerPath       = "github.com/otelcol-kubevirt"
	rootModule      = ownerPath + "/otelcol-kubevirt"
	receiverModule  = rootModule + "/receiver/kubevirtreceiver"
	testenvModule   = rootModule + "/internal/testenv"
	builderConfig   = "testdata/user-builder-config.yaml"
	collectorConfig = "testdata/user-config.yaml"

	node   = "worker-node-1"
	metric = "kubevirt_vmi_hypervisor_info"
	want   = metric + `{hypervisor_type="kvm",name="my-vm",namespace="default",node="worker-node-1"} 1`
)

// userNode is a libvirt test driver node holding default/my-vm's domain, under KVM.
const userNode = `<node>
  <domain type='kvm'><name>default_my-vm</name><memory>65536</memory><os><type arch='x86_64'>hvm</type></os></domain>
</node>`

func TestUserBuiltCollectorServesTheLine(t *testing.T) {
	testenv.RequireDaemons(t, "an ocb build of a user's collector from this repository's modules (minutes), then it with etcd and kube-apiserver")
	if _, err := exec.LookPath("go"); err != nil {
		testenv.Unavailable(t, "no go command to build the collector with: %v", err)
	}
	if out, err := exec.Command("pkg-config", "--exists", "--print-errors", "libvirt").CombinedOutput(); err != nil {
		testenv.Unavailable(t, "libvirt's development files are not installed (libvirt-dev; `make deps`): %v %s", err, out)
	}
	repo, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	receiverDir := filepath.Join(repo, "receiver", "kubevirtreceiver")
	version, err := releaseVersion(receiverDir)
	if err != nil {
		t.Fatal(err)
	}
	checkConfigNames(t, version)
	ctx, cancel := testContext(t)
	defer cancel()

	proxy := t.TempDir()
	err = writeModuleProxy(proxy, version,
		localModule{Path: receiverModule, Dir: receiverDir},
		localModule{Path: testenvModule, Dir: filepath.Join(repo, "internal", "testenv")})
	if err != nil {
		t.Fatal(err)
	}
	machine, err := readMachineGoEnv(ctx)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	ocb, err := installOCB(ctx, repo, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("ocb built in %v", time.Since(start).Round(time.Second))
	modCache := filepath.Join(t.TempDir(), "mod")
	env := userGoEnv(machine, proxy, modCache)
	// Runs before TempDir's own cleanup, which could not remove the read-only
	// directories Go makes in a module cache unless run as root.
	t.Cleanup(func() {
		if err := cleanModCache(env); err != nil {
			t.Error(err)
		}
	})

	work := t.TempDir()
	config, err := filepath.Abs(builderConfig)
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	if err := runOCB(ctx, ocb, config, work, env, filepath.Join(work, "ocb.log")); err != nil {
		t.Fatalf("after %v: %v", time.Since(start).Round(time.Second), err)
	}
	t.Logf("ocb generated, tidied and compiled the distribution in %v", time.Since(start).Round(time.Second))
	n, size, fromNetwork, err := zipFigures(modCache, filepath.Join(machine.GOMODCACHE, "cache", "download"))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the empty module cache took %d module zips, %d MB; %d of them from the network proxy %v",
		n, size>>20, len(fromNetwork), fromNetwork[:min(len(fromNetwork), 10)])

	bin := checkWhatWasFetched(t, modCache, proxy, version, work)
	checkServes(ctx, t, bin)
}

// checkConfigNames fails unless the builder config names the receiver at version, the
// one the receiver's go.mod requires of the harness module.
func checkConfigNames(t *testing.T, version string) {
	t.Helper()
	cfg, err := os.ReadFile(builderConfig)
	if err != nil {
		t.Fatal(err)
	}
	line := "- gomod: " + receiverModule + " " + version
	if !strings.Contains(string(cfg), line) {
		t.Fatalf("%s does not name the receiver at the release's version (%s requires %s %s): want the line %q",
			builderConfig, receiverModule, testenvModule, version, line)
	}
}

// testContext ends a little before the test binary's -timeout would, so that the test
// fails with what it was waiting for rather than a goroutine dump.
func testContext(t *testing.T) (context.Context, context.CancelFunc) {
	if deadline, ok := t.Deadline(); ok {
		return context.WithDeadline(context.Background(), deadline.Add(-time.Minute))
	}
	return context.WithTimeout(context.Background(), 40*time.Minute)
}

// checkWhatWasFetched checks the fresh module cache after the build: nothing of the
// lab, the receiver's zip the very one written for it, and the binary built from it
// unreplaced. It logs which of our modules were fetched whole and which as go.mod
// only, and returns the binary.
func checkWhatWasFetched(t *testing.T, modCache, proxy, version, work string) string {
	t.Helper()
	fetched, err := downloads(modCache, ownerPath)
	if err != nil {
		t.Fatal(err)
	}
	paths := make([]string, 0, len(fetched))
	for p := range fetched {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	for _, p := range paths {
		slices.Sort(fetched[p])
		t.Logf("fetched %s: %s", p, strings.Join(fetched[p], " "))
	}
	if err := checkNothingOfTheLab(modCache, fetched); err != nil {
		t.Error(err)
	}
	receiver := module.Version{Path: receiverModule, Version: version}
	sum, err := checkZipFromProxy(modCache, proxy, receiver)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(work, "otelcol-custom", "otelcol-custom")
	if err := checkBuiltFrom(bin, receiver, sum); err != nil {
		t.Fatal(err)
	}
	return bin
}

// checkServes runs the built collector with a user's config against a kube-apiserver
// holding default/my-vm Running on node and libvirt's test driver holding its KVM
// domain, until the endpoint serves exactly its line and the health check answers.
func checkServes(ctx context.Context, t *testing.T, bin string) {
	t.Helper()
	api := testenv.MustStartAPIServer(t)
	if err := api.CreateVMI(ctx, "default", "my-vm"); err != nil {
		t.Fatal(err)
	}
	if err := api.SetVMIStatus(ctx, "default", "my-vm", testenv.VMIStatus{Phase: "Running", NodeName: node}); err != nil {
		t.Fatal(err)
	}
	nodeXML := filepath.Join(t.TempDir(), "node.xml")
	if err := os.WriteFile(nodeXML, []byte(userNode), 0o600); err != nil {
		t.Fatal(err)
	}
	config, err := filepath.Abs(collectorConfig)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	col, err := testenv.StartCollector(ctx, testenv.CollectorOptions{
		Bin:    bin,
		Config: config,
		Dir:    dir,
		Env: []string{
			"K8S_NODE_NAME=" + node,
			"KUBECONFIG=" + api.KubeconfigPath,
			"LIBVIRT_URI=test://" + nodeXML,
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := col.Stop(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			out, _ := os.ReadFile(col.LogPath)
			t.Logf("collector log:\n%s", out)
		}
	})

	waitCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var got []string
	var last error
	err = wait.PollUntilContextCancel(waitCtx, 50*time.Millisecond, true, func(context.Context) (bool, error) {
		got, last = col.Lines(waitCtx, metric)
		return last == nil && slices.Equal(got, []string{want}), nil
	})
	if err != nil {
		t.Fatalf("endpoint lines %q (last error: %v), want exactly %q", got, last, want)
	}
	health := col.HealthURL
	if health == "" {
		t.Fatal("the collector's configuration has no health_check")
	}
	status := 0
	err = wait.PollUntilContextCancel(waitCtx, 50*time.Millisecond, true, func(context.Context) (bool, error) {
		status, last = getStatus(waitCtx, health)
		return last == nil && status == http.StatusOK, nil
	})
	if err != nil {
		t.Fatalf("health check %s answered %d (last error: %v), want 200", health, status, last)
	}
}

func getStatus(ctx context.Context, url string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	return resp.StatusCode, nil
}
