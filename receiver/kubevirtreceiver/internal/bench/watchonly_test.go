package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv/tied"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/kube"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/vmi"
)

// watchOnlyEnv, set to a node name, makes this test binary run as a process that only
// watches that node's VMIs (see TestMain and runWatchOnly), with the API server of
// $KUBECONFIG.
const watchOnlyEnv = "BENCH_WATCH_ONLY_NODE"

// watchOnlySynced is what a watch-only process prints once its watch is synced.
const watchOnlySynced = "synced"

type watchOnly struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

// startWatchOnly runs this test binary as a watch-only process for node of c and
// returns once its watch is synced.
func startWatchOnly(c *cluster, node string) (*watchOnly, error) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), watchOnlyEnv+"="+node, "KUBECONFIG="+c.api.KubeconfigPath)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	w := &watchOnly{cmd: cmd, exited: make(chan struct{})}
	if err := tied.Start(cmd, func(error) { close(w.exited) }); err != nil {
		return nil, err
	}
	synced := make(chan bool, 2) // true when it prints the line, false when its output ends
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.TrimSpace(sc.Text()) == watchOnlySynced {
				synced <- true
			}
		}
		synced <- false
	}()
	select {
	case ok := <-synced:
		if ok {
			return w, nil
		}
		w.stop()
		return nil, errors.New("the watch-only process exited before its watch was synced")
	case <-time.After(time.Minute):
		w.stop()
		return nil, errors.New("the watch-only process's watch was not synced within a minute")
	}
}

func (w *watchOnly) stop() {
	_ = w.cmd.Process.Kill()
	<-w.exited
}

// runWatchOnly watches node's VMIs as the receiver does (internal/vmi's watcher, the
// keys it reports dropped) until it is killed, printing watchOnlySynced once the
// watch is synced.
func runWatchOnly(node string) error {
	cfg, err := kube.RESTConfig(kube.AuthKubeConfig, "")
	if err != nil {
		return err
	}
	w, err := vmi.NewWatcher(cfg, node, zap.NewNop(), vmi.WatcherHandlers{Changed: func(string) {}})
	if err != nil {
		return err
	}
	w.Start(context.Background())
	for !w.Health().Synced {
		<-time.After(50 * time.Millisecond)
	}
	fmt.Println(watchOnlySynced)
	select {}
}
