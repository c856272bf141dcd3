package lab

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv"
)

// MigrationResource identifies KubeVirt's VirtualMachineInstanceMigrations
// (testdata/crds): creating one for a Running VMI migrates it.
var MigrationResource = schema.GroupVersionResource{Group: "kubevirt.io", Version: "v1", Resource: "virtualmachineinstancemigrations"}

// Labels KubeVirt puts on a migration's objects.
const (
	// migrationJobLabel, on a migration's target pod, is the migration's UID.
	migrationJobLabel = "kubevirt.io/migrationJobUID"
	// MigrationTargetLabel, on a migrating VMI, names the target's node, from the
	// moment the target pod is scheduled until the migration ends.
	MigrationTargetLabel = "kubevirt.io/migrationTargetNodeName"
)

// migratedVMI is the name of the VMI migration m moves.
func migratedVMI(m *unstructured.Unstructured) string {
	name, _, _ := unstructured.NestedString(m.Object, "spec", "vmiName")
	return name
}

// migrationOf returns v's oldest migration that has not ended, or nil.
func (c *controller) migrationOf(v *unstructured.Unstructured) *unstructured.Unstructured {
	var found *unstructured.Unstructured
	for _, obj := range c.migrations.GetStore().List() {
		m := obj.(*unstructured.Unstructured)
		if m.GetNamespace() != v.GetNamespace() || migratedVMI(m) != v.GetName() {
			continue
		}
		if p := phaseOf(m); p == "Succeeded" || p == "Failed" {
			continue
		}
		if t := m.GetCreationTimestamp(); found == nil || t.Before(ptrTime(found.GetCreationTimestamp())) {
			found = m
		}
	}
	return found
}

func ptrTime(t metav1.Time) *metav1.Time { return &t }

// migrate takes the Running VMI v one step further through migration m, in the
// order KubeVirt's migration controller and virt-handlers go, each step one write
// whose event brings the next:
//
//  1. status.migrationState names the migration and its source pod, and
//     status.runtimeUser becomes the target's user before the target pod exists
//     (while the source still runs as the old one);
//  2. the target pod is created: a new launcher pod, as v's annotations say now;
//  3. once it is scheduled, status.activePods lists it (the VMI's usual status does
//     that), the migrationState names it and the VMI is labelled with its node;
//  4. once its guest runs, the source's guest is stopped, as a completed migration
//     leaves it, so that its launcher ends and its pod Succeeds (and stays listed in
//     activePods); the migrationState is completed, the label removed, the VMI's
//     nodeName is the target's and the migration Succeeded.
//
// A target that ends before its guest runs fails the migration; the VMI stays on its
// source. Unlike KubeVirt's, the target boots a guest of its own instead of receiving
// the source's memory, so its domain type is the one v's annotations ask for: a
// migration can change it, which KubeVirt's does not, and a stale type shows.
func (c *controller) migrate(ctx context.Context, v, m *unstructured.Unstructured, pods []*corev1.Pod) error {
	key := v.GetNamespace() + "/" + v.GetName()
	uid := string(m.GetUID())
	state, _, _ := unstructured.NestedMap(v.Object, "status", "migrationState")
	switch {
	case state["migrationUid"] != uid:
		source := current(v, pods)
		target, err := c.launcherFor(v)
		if err != nil {
			return err
		}
		user := runAsUser(target)
		c.progress("VMI %s: migration %s from pod %s", key, m.GetName(), source.Name)
		if err := c.updateVMI(ctx, v, func(status map[string]any, _ map[string]string) {
			status["migrationState"] = map[string]any{
				"migrationUid":   uid,
				"sourceNode":     source.Spec.NodeName,
				"sourcePod":      source.Name,
				"startTimestamp": now(),
			}
			status["runtimeUser"] = *user
		}); err != nil {
			return err
		}
		return c.setMigrationPhase(ctx, m, "Scheduling")
	case state["completed"] == true:
		// Ended; the migration's own status is behind.
		if state["failed"] == true {
			return c.setMigrationPhase(ctx, m, "Failed")
		}
		return c.setMigrationPhase(ctx, m, "Succeeded")
	}

	var target *corev1.Pod
	for _, p := range pods {
		if p.Labels[migrationJobLabel] == uid {
			target = p
		}
	}
	switch {
	case target == nil:
		_, err := c.createLauncher(ctx, v, uid, map[string]string{migrationJobLabel: uid})
		return err
	case target.Status.Phase == corev1.PodSucceeded || target.Status.Phase == corev1.PodFailed:
		c.progress("VMI %s: migration %s failed: target pod %s ended", key, m.GetName(), target.Name)
		source := current(v, pods)
		if err := c.updateVMI(ctx, v, func(status map[string]any, labels map[string]string) {
			setState(status, "failed", true, "completed", true, "endTimestamp", now())
			if source != nil {
				status["runtimeUser"] = *runAsUser(source)
			}
			delete(labels, MigrationTargetLabel)
		}); err != nil {
			return err
		}
		return c.setMigrationPhase(ctx, m, "Failed")
	case target.Spec.NodeName == "":
		return nil // scheduling; its event comes
	case !podReady(target):
		if state["targetPod"] == target.Name {
			return nil // preparing; its event comes
		}
		if err := c.updateVMI(ctx, v, func(status map[string]any, labels map[string]string) {
			setState(status, "targetPod", target.Name, "targetNode", target.Spec.NodeName)
			labels[MigrationTargetLabel] = target.Spec.NodeName
		}); err != nil {
			return err
		}
		return c.setMigrationPhase(ctx, m, "Running")
	}

	// The target's guest runs: hand over.
	if source := current(v, pods); source != nil && source.Status.Phase == corev1.PodRunning {
		if err := c.stopGuest(ctx, v, source); err != nil {
			return fmt.Errorf("stopping the guest of source pod %s: %w", source.Name, err)
		}
	}
	if err := c.updateVMI(ctx, v, func(status map[string]any, labels map[string]string) {
		setState(status, "targetPod", target.Name, "targetNode", target.Spec.NodeName, "completed", true, "endTimestamp", now())
		status["nodeName"] = target.Spec.NodeName
		labels[testenv.NodeNameLabel] = target.Spec.NodeName
		delete(labels, MigrationTargetLabel)
	}); err != nil {
		return err
	}
	c.progress("VMI %s: migration %s completed: now in pod %s", key, m.GetName(), target.Name)
	return c.setMigrationPhase(ctx, m, "Succeeded")
}

// setState sets fields of status.migrationState: name, value, name, value...
func setState(status map[string]any, fields ...any) {
	state, _ := status["migrationState"].(map[string]any)
	if state == nil {
		state = map[string]any{}
	}
	for i := 0; i+1 < len(fields); i += 2 {
		state[fields[i].(string)] = fields[i+1]
	}
	status["migrationState"] = state
}

// stopGuest destroys the guest in a launcher pod through its own libvirt, as a
// completed migration leaves the source (libvirt removes the domain's status file),
// and ends the launcher. A guest already stopped (a retry) is not an error.
func (c *controller) stopGuest(ctx context.Context, v *unstructured.Unstructured, pod *corev1.Pod) error {
	uri, domain := launcherURI(pod), v.GetNamespace()+"_"+v.GetName()
	if _, err := c.exec(ctx, pod, "virsh", "-q", "-c", uri, "destroy", domain); err != nil {
		state, serr := c.exec(ctx, pod, "virsh", "-q", "-c", uri, "domstate", domain)
		if s := strings.TrimSpace(string(state)); serr != nil || s == "running" || s == "paused" {
			return err
		}
	}
	// KubeVirt's virt-launcher, its guest gone, waits for virt-handler to take its
	// last notification, and ends at once when it has; with no virt-handler it waits
	// out its timeouts (up to its 4-minute QEMU timeout when the guest went before
	// its monitor found it). A SIGTERM to virt-launcher-monitor, PID 1 of the
	// container, ends it within seconds, as the source of a completed migration ends.
	_, err := c.exec(ctx, pod, "sh", "-c", "kill -TERM 1")
	return err
}

// launcherURI is the libvirt URI of a launcher pod, from inside it: KubeVirt's
// socket in the libvirt-runtime volume, session mode for a non-root launcher,
// system mode for a root one.
func launcherURI(pod *corev1.Pod) string {
	if *runAsUser(pod) == 0 {
		return "qemu+unix:///system?socket=" + libvirtRuntime + "/virtqemud-sock"
	}
	return "qemu+unix:///session?socket=" + libvirtRuntime + "/virtqemud-sock"
}

// setMigrationPhase writes m's status.phase, through its status subresource.
func (c *controller) setMigrationPhase(ctx context.Context, m *unstructured.Unstructured, phase string) error {
	if phaseOf(m) == phase {
		return nil
	}
	m = m.DeepCopy()
	if err := unstructured.SetNestedField(m.Object, phase, "status", "phase"); err != nil {
		return err
	}
	_, err := c.dyn.Resource(MigrationResource).Namespace(m.GetNamespace()).UpdateStatus(ctx, m, metav1.UpdateOptions{})
	return err
}

func now() string { return time.Now().UTC().Format(time.RFC3339) }
