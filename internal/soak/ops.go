package soak

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/util/retry"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv"
)

// This file holds what the soak does to the real parts, playing KubeVirt's
// virt-controller and virt-handler (VMI objects) and the kubelet (launcher pods). Each
// operation brings the model in line once the real change succeeded (VMI fields are set
// by the caller before writeVMI writes them), then calls step.

// vmiObject is the VMI v as KubeVirt writes it: status and the kubevirt.io/nodeName
// label in one object, so that every transition is one update.
func setVMIObject(u *unstructured.Unstructured, v *VMI) {
	status := map[string]any{"phase": v.Phase}
	if v.Node != "" {
		status["nodeName"] = v.Node
	}
	if pods := v.ActivePods(); pods != nil {
		m := make(map[string]any, len(pods))
		for uid, node := range pods {
			m[uid] = node
		}
		status["activePods"] = m
	}
	l := v.LauncherOn(v.Node)
	if l == nil && len(v.Launchers) > 0 {
		l = v.Launchers[0]
	}
	if l != nil {
		status["runtimeUser"] = l.RuntimeUser
	}
	if v.Paused {
		status["conditions"] = []any{map[string]any{"type": "Paused", "status": "True", "reason": "PausedByUser"}}
	}
	u.Object["status"] = status
	labels := u.GetLabels()
	if v.Node != "" {
		if labels == nil {
			labels = map[string]string{}
		}
		labels[testenv.NodeNameLabel] = v.Node
	} else {
		delete(labels, testenv.NodeNameLabel)
	}
	u.SetLabels(labels)
}

// createVMI creates v in the API server with its status, and in the model.
func (s *soak) createVMI(ctx context.Context, v *VMI) error {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": testenv.VMIResource.GroupVersion().String(),
		"kind":       "VirtualMachineInstance",
		"metadata":   map[string]any{"name": v.Name, "namespace": v.Namespace},
		// The CRD requires a spec; the collector never reads it.
		"spec": map[string]any{"domain": map[string]any{"devices": map[string]any{}}},
	}}
	setVMIObject(u, v)
	if _, err := s.client.Resource(testenv.VMIResource).Namespace(v.Namespace).Create(ctx, u, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create VMI %s: %w", v.Key(), err)
	}
	s.world.VMIs[v.Key()] = v
	s.step()
	return nil
}

// writeVMI writes v's status and label, as one update.
func (s *soak) writeVMI(ctx context.Context, v *VMI) error {
	vmis := s.client.Resource(testenv.VMIResource).Namespace(v.Namespace)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		u, err := vmis.Get(ctx, v.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		setVMIObject(u, v)
		_, err = vmis.Update(ctx, u, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("update VMI %s: %w", v.Key(), err)
	}
	s.step()
	return nil
}

// deleteVMI deletes v, from the model too; the VMI CRD has no finalizers, so it is gone
// on return.
func (s *soak) deleteVMI(ctx context.Context, v *VMI) error {
	err := s.client.Resource(testenv.VMIResource).Namespace(v.Namespace).Delete(ctx, v.Name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete VMI %s: %w", v.Key(), err)
	}
	delete(s.world.VMIs, v.Key())
	s.step()
	return nil
}

// startLauncher starts a launcher pod for v on node with a running guest of domainType,
// falling back to "qemu" for good when this machine cannot run "kvm" guests.
func (s *soak) startLauncher(ctx context.Context, v *VMI, node, domainType string) (*Launcher, error) {
	if !s.kvm {
		domainType = "qemu"
	}
	pod, err := s.nodes[node].StartLauncher(ctx, v.Namespace, v.Name, domainType)
	if errors.Is(err, testenv.ErrKVMUnusable) {
		s.logf("KVM guests cannot run here (%v); every guest runs under TCG from now on", err)
		s.kvm = false
		domainType = "qemu"
		pod, err = s.nodes[node].StartLauncher(ctx, v.Namespace, v.Name, domainType)
	}
	if err != nil {
		return nil, fmt.Errorf("launcher for %s on %s: %w", v.Key(), node, err)
	}
	s.pods[pod.PodUID] = pod
	return &Launcher{
		PodUID: pod.PodUID, Node: node, DomainType: domainType, RuntimeUser: pod.RuntimeUser(),
		Guest: true, Daemon: true, Socket: true,
	}, nil
}

func (s *soak) pod(l *Launcher) *testenv.LauncherPod { return s.pods[l.PodUID] }

// destroyGuest stops the launcher's guest and removes its definition, as virt-launcher
// does when the VMI stops (or before it starts, for a pod whose domain is not up yet).
func (s *soak) destroyGuest(l *Launcher) error {
	p := s.pod(l)
	if err := p.Libvirtd.DestroyGuest(p.Domain()); err != nil {
		return err
	}
	l.Guest, l.Suspended = false, false
	s.step()
	return nil
}

// startGuest defines and starts the launcher's guest.
func (s *soak) startGuest(ctx context.Context, l *Launcher) error {
	p := s.pod(l)
	if err := p.Libvirtd.StartGuest(ctx, p.Domain(), l.DomainType); err != nil {
		return err
	}
	l.Guest = true
	s.step()
	return nil
}

// suspendGuest pauses (suspend true) or resumes the launcher's guest in libvirt.
func (s *soak) suspendGuest(l *Launcher, suspend bool) error {
	p := s.pod(l)
	conn, err := p.Libvirtd.Connect()
	if err != nil {
		return err
	}
	defer conn.Close()
	dom, err := conn.LookupDomainByName(p.Domain())
	if err != nil {
		return fmt.Errorf("domain %s: %w", p.Domain(), err)
	}
	defer dom.Free()
	if suspend {
		err = dom.Suspend()
	} else {
		err = dom.Resume()
	}
	if err != nil {
		return fmt.Errorf("suspend=%v domain %s: %w", suspend, p.Domain(), err)
	}
	l.Suspended = suspend
	s.step()
	return nil
}

// killDaemon stops the launcher's libvirtd with sig; its guest keeps running.
func (s *soak) killDaemon(l *Launcher, sig syscall.Signal) error {
	if err := s.pod(l).Libvirtd.KillDaemon(sig); err != nil {
		return err
	}
	l.Daemon = false
	s.step()
	return nil
}

// startDaemon starts the launcher's libvirtd again; it re-attaches to its guest.
func (s *soak) startDaemon(ctx context.Context, l *Launcher) error {
	if err := s.pod(l).Libvirtd.StartDaemon(ctx); err != nil {
		return err
	}
	l.Daemon = true
	s.step()
	return nil
}

// socketLink is the launcher socket as the collector dials it, virtqemud-sock in the
// pod's libvirt-runtime volume.
func (s *soak) socketLink(l *Launcher) string {
	return filepath.Join(s.pod(l).VolumeDir(), testenv.LauncherSocketName)
}

// removeSocket removes the launcher socket the collector dials. libvirtd keeps serving
// the connections it has.
func (s *soak) removeSocket(l *Launcher) error {
	if err := os.Remove(s.socketLink(l)); err != nil {
		return err
	}
	l.Socket = false
	s.step()
	return nil
}

// restoreSocket puts the launcher socket back.
func (s *soak) restoreSocket(l *Launcher) error {
	if err := os.Symlink(testenv.LibvirtdSocketName, s.socketLink(l)); err != nil {
		return err
	}
	l.Socket = true
	s.step()
	return nil
}

// teardown deletes the launcher pod: its guest, libvirtd and directory go.
func (s *soak) teardown(l *Launcher) error {
	if l.Gone {
		return nil
	}
	if err := s.pod(l).Stop(); err != nil {
		return err
	}
	delete(s.pods, l.PodUID)
	l.Gone, l.Guest, l.Suspended, l.Daemon, l.Socket = true, false, false, false, false
	s.step()
	return nil
}
