// Package lab plays KubeVirt's part on a real node (internal/cluster), for `make run`
// and the tests of the DaemonSet: it installs the VirtualMachineInstance CRD, hands
// out /dev/kvm through a device plugin as virt-handler does, gives every VMI the
// launcher pod KubeVirt's virt-controller would render for it, running KubeVirt's own
// virt-launcher (built from its module, tools/kubevirt), which defines and starts the
// domain itself (its standalone mode), and migrates a VMI to a new launcher pod on the
// node when a VirtualMachineInstanceMigration asks; the VMI's status follows the
// pods. It also deploys the collector exactly as a user does, with `kubectl apply -k
// deploy/kubernetes`.
//
// It is not KubeVirt: no virt-api, virt-handler or virt-controller, no migrations
// between nodes (there is one), no VirtualMachines, no networking or disks for
// guests. The launcher pod, libvirt's layout in it and the domain XML are KubeVirt's;
// the VMI's status is written by the lab's controller from the pods' state
// (README.md says what else differs from a production node).
package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	corev1 "k8s.io/api/core/v1"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/cluster"
)

// Options configures Start.
type Options struct {
	// RepoRoot is the checkout, where the VMI CRD (testdata/crds) is. Required.
	RepoRoot string
	// LauncherImage is the launcher pods' image. Default: LauncherImage.
	LauncherImage string
	// Progress, if set, receives a line for each step and each VMI transition.
	Progress func(format string, args ...any)
}

// Lab is KubeVirt's stand-in running against a cluster.
type Lab struct {
	// KVM says whether the node advertises KVMResource: /dev/kvm is usable here.
	// Without it every VMI runs under TCG.
	KVM bool

	plugin *kvmPlugin
	ctrl   *controller
	cancel context.CancelFunc
	once   sync.Once
}

// Start installs the CRD, the KVM device plugin (where /dev/kvm is usable) and the
// launcher controller. The caller must call Stop before stopping the cluster.
func Start(ctx context.Context, c *cluster.Cluster, opts Options) (_ *Lab, err error) {
	if opts.RepoRoot == "" {
		return nil, errors.New("lab: Options.RepoRoot is required")
	}
	if opts.LauncherImage == "" {
		opts.LauncherImage = LauncherImage
	}
	if opts.Progress == nil {
		opts.Progress = func(string, ...any) {}
	}
	l := &Lab{}
	defer func() {
		if err != nil {
			l.Stop()
		}
	}()
	crds := filepath.Join(opts.RepoRoot, "testdata", "crds")
	if _, err := c.Kubectl(ctx, nil, "apply", "-f", crds); err != nil {
		return nil, err
	}
	if _, err := c.Kubectl(ctx, nil, "wait", "--for=condition=Established", "--timeout=60s",
		"crd/virtualmachineinstances.kubevirt.io", "crd/virtualmachineinstancemigrations.kubevirt.io"); err != nil {
		return nil, err
	}

	if kvmUsable() {
		// kubelet reports the devices with its next node status (within 10s); a
		// launcher pod asking for one before that waits in the scheduler.
		if l.plugin, err = startKVMPlugin(ctx, filepath.Join(c.KubeletDir(), "device-plugins")); err != nil {
			return nil, err
		}
		l.KVM = true
		opts.Progress("the KVM device plugin offers %s", KVMResource)
	} else {
		opts.Progress("/dev/kvm is not usable here: every VMI runs under TCG")
	}

	ctx, l.cancel = context.WithCancel(context.Background())
	exec := func(ctx context.Context, pod *corev1.Pod, command ...string) ([]byte, error) {
		return c.Kubectl(ctx, nil, append([]string{"exec", "--namespace", pod.Namespace, pod.Name, "--container", "compute", "--"}, command...)...)
	}
	l.ctrl = newController(c.Clientset, c.Dynamic, opts.LauncherImage, l.KVM, exec, opts.Progress)
	if err := l.ctrl.run(ctx); err != nil {
		return nil, err
	}
	return l, nil
}

// Stop stops the controller and the device plugin; pods and VMIs stay. Safe to call
// more than once.
func (l *Lab) Stop() {
	l.once.Do(func() {
		if l.cancel != nil {
			l.cancel()
			l.ctrl.wait()
		}
		if l.plugin != nil {
			l.plugin.stop()
		}
	})
}

// kvmUsable says whether this process can open /dev/kvm read-write, as a launcher
// given the device can.
func kvmUsable() bool {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

// Where `make run` and `make test` say the images are.
const (
	// CollectorImageEnv names the collector image's docker-archive
	// (bin/otelcol-kubevirt-image.tar, from `make image`).
	CollectorImageEnv = "OTELCOL_KUBEVIRT_IMAGE"
	// LabImagesEnv names the directory of the lab's own image archives, pause.tar
	// and virt-launcher.tar (`hack/images.sh lab`).
	LabImagesEnv = "LAB_IMAGES_DIR"
)

// ImagesFromEnv returns the archives of every image the node needs: the sandbox, the
// launcher and the collector, from CollectorImageEnv and LabImagesEnv.
func ImagesFromEnv() ([]string, error) {
	collector, labDir := os.Getenv(CollectorImageEnv), os.Getenv(LabImagesEnv)
	if collector == "" || labDir == "" {
		return nil, fmt.Errorf("lab: %s and %s must name the images (`make image` and `hack/images.sh lab` build them; `make run` and `make test` set them)", CollectorImageEnv, LabImagesEnv)
	}
	return []string{filepath.Join(labDir, "pause.tar"), filepath.Join(labDir, "virt-launcher.tar"), collector}, nil
}
