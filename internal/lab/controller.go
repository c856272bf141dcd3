package lab

import (
	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv"

	"context"
	"errors"
	"fmt"
	"maps"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
	"k8s.io/client-go/util/workqueue"
)

// controller does, for the lab's node, what KubeVirt's virt-controller and
// virt-handler do for the part of a VMI's life the collector sees: a new VMI gets a
// launcher pod (launcherPod); the VMI's status follows the pod: Scheduling, then
// Scheduled on its node, Running with status.activePods and runtimeUser once the
// launcher's guest runs (the pod is Ready), Succeeded or Failed when the launcher
// ends. Deleting a VMI deletes its pod through the owner reference, as in KubeVirt.
//
// It does not migrate, pause or restart anything, and it writes status and the
// kubevirt.io/nodeName label in one update of the VMI, as KubeVirt does (the VMI CRD
// has no status subresource).
type controller struct {
	kube     kubernetes.Interface
	dyn      dynamic.Interface
	image    string
	kvm      bool // whether the node advertises KVMResource
	progress func(format string, args ...any)

	vmis  cache.SharedIndexInformer
	pods  cache.SharedIndexInformer
	queue workqueue.TypedRateLimitingInterface[string]
	wg    sync.WaitGroup
}

func newController(kube kubernetes.Interface, dyn dynamic.Interface, image string, kvm bool, progress func(string, ...any)) *controller {
	c := &controller{
		kube: kube, dyn: dyn, image: image, kvm: kvm, progress: progress,
		queue: workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]()),
	}
	c.vmis = dynamicinformer.NewDynamicSharedInformerFactory(dyn, 0).ForResource(testenv.VMIResource).Informer()
	selector := labels.Set{launcherLabel: "virt-launcher"}.String()
	c.pods = informers.NewSharedInformerFactoryWithOptions(kube, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = selector }),
	).Core().V1().Pods().Informer()

	enqueueVMI := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			c.queue.Add(key)
		}
	}
	enqueueOwner := func(obj any) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		if pod, ok := obj.(*corev1.Pod); ok && pod.Labels[vmNameLabel] != "" {
			c.queue.Add(pod.Namespace + "/" + pod.Labels[vmNameLabel])
		}
	}
	_, _ = c.vmis.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqueueVMI, UpdateFunc: func(_, o any) { enqueueVMI(o) }, DeleteFunc: enqueueVMI,
	})
	_, _ = c.pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqueueOwner, UpdateFunc: func(_, o any) { enqueueOwner(o) }, DeleteFunc: enqueueOwner,
	})
	return c
}

// run starts the informers and a worker; it returns once the caches are synced.
func (c *controller) run(ctx context.Context) error {
	c.wg.Go(func() { c.vmis.RunWithContext(ctx) })
	c.wg.Go(func() { c.pods.RunWithContext(ctx) })
	if !cache.WaitForCacheSync(ctx.Done(), c.vmis.HasSynced, c.pods.HasSynced) {
		return errors.New("lab controller: caches did not sync")
	}
	c.wg.Go(func() {
		<-ctx.Done()
		c.queue.ShutDown()
	})
	c.wg.Go(func() {
		for c.processNext(ctx) {
		}
	})
	return nil
}

func (c *controller) wait() { c.wg.Wait() }

func (c *controller) processNext(ctx context.Context) bool {
	key, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(key)
	if err := c.sync(ctx, key); err != nil {
		if ctx.Err() == nil {
			c.progress("VMI %s: %v (retrying)", key, err)
		}
		c.queue.AddRateLimited(key)
		return true
	}
	c.queue.Forget(key)
	return true
}

// vmiStatus is what the controller writes of a VMI's status.
type vmiStatus struct {
	phase, node string
	activePods  map[string]any
	runtimeUser bool
}

func (c *controller) sync(ctx context.Context, key string) error {
	obj, exists, err := c.vmis.GetIndexer().GetByKey(key)
	if err != nil || !exists {
		return err // a deleted VMI's pod goes with it (owner reference)
	}
	v := obj.(*unstructured.Unstructured)
	phase, _, _ := unstructured.NestedString(v.Object, "status", "phase")
	if phase == "Succeeded" || phase == "Failed" {
		return nil
	}
	pod := c.launcherOf(v)
	if pod == nil {
		if phase != "" && phase != "Pending" && phase != "Scheduling" {
			// The launcher of a started VMI is gone: KubeVirt fails the VMI.
			return c.setStatus(ctx, v, vmiStatus{phase: "Failed"})
		}
		kvm := c.kvm && v.GetAnnotations()[EmulationAnnotation] != "true"
		created, err := c.kube.CoreV1().Pods(v.GetNamespace()).Create(ctx, launcherPod(v, c.image, kvm), metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("creating its launcher pod: %w", err)
		}
		accel := "TCG"
		if kvm {
			accel = "/dev/kvm"
		}
		c.progress("VMI %s: launcher pod %s (%s)", key, created.Name, accel)
		return c.setStatus(ctx, v, vmiStatus{phase: "Scheduling"})
	}
	return c.setStatus(ctx, v, statusFor(pod, phase))
}

// launcherOf finds v's launcher pod in the cache, the newest if there are several.
func (c *controller) launcherOf(v *unstructured.Unstructured) *corev1.Pod {
	var found *corev1.Pod
	for _, obj := range c.pods.GetStore().List() {
		pod := obj.(*corev1.Pod)
		if pod.Namespace != v.GetNamespace() || pod.Labels[createdByLabel] != string(v.GetUID()) {
			continue
		}
		if found == nil || pod.CreationTimestamp.After(found.CreationTimestamp.Time) {
			found = pod
		}
	}
	return found
}

// statusFor is the VMI status that pod's state stands for, given the VMI's phase now.
func statusFor(pod *corev1.Pod, phase string) vmiStatus {
	node := pod.Spec.NodeName
	active := map[string]any{string(pod.UID): node}
	switch {
	case pod.Status.Phase == corev1.PodSucceeded:
		return vmiStatus{phase: "Succeeded", node: node, activePods: active, runtimeUser: true}
	case pod.Status.Phase == corev1.PodFailed:
		return vmiStatus{phase: "Failed", node: node, activePods: active, runtimeUser: true}
	case node == "":
		return vmiStatus{phase: "Scheduling"}
	case podReady(pod) || (phase == "Running" && pod.Status.Phase == corev1.PodRunning):
		// Ready once the guest runs; a guest that stops makes the launcher exit
		// right after the probe fails, so the VMI stays Running until then.
		return vmiStatus{phase: "Running", node: node, activePods: active, runtimeUser: true}
	default:
		return vmiStatus{phase: "Scheduled", node: node, activePods: active, runtimeUser: true}
	}
}

func podReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// setStatus writes st into the VMI's status and its kubevirt.io/nodeName label,
// unless they are already so.
func (c *controller) setStatus(ctx context.Context, cached *unstructured.Unstructured, st vmiStatus) error {
	if sameStatus(cached, st) {
		return nil
	}
	client := c.dyn.Resource(testenv.VMIResource).Namespace(cached.GetNamespace())
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		v, err := client.Get(ctx, cached.GetName(), metav1.GetOptions{})
		if err != nil {
			return err
		}
		if v.GetUID() != cached.GetUID() {
			return nil // deleted and made anew; its own events follow
		}
		status, _, _ := unstructured.NestedMap(v.Object, "status")
		if status == nil {
			status = map[string]any{}
		}
		status["phase"] = st.phase
		if st.node != "" {
			status["nodeName"] = st.node
			status["activePods"] = st.activePods
			lbls := v.GetLabels()
			if lbls == nil {
				lbls = map[string]string{}
			}
			lbls[testenv.NodeNameLabel] = st.node
			v.SetLabels(lbls)
		}
		if st.runtimeUser {
			status["runtimeUser"] = int64(launcherUser)
		}
		v.Object["status"] = status
		_, err = client.Update(ctx, v, metav1.UpdateOptions{})
		return err
	})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err == nil && st.phase != phaseOf(cached) {
		c.progress("VMI %s/%s: %s", cached.GetNamespace(), cached.GetName(), st.phase)
	}
	return err
}

func phaseOf(v *unstructured.Unstructured) string {
	p, _, _ := unstructured.NestedString(v.Object, "status", "phase")
	return p
}

func sameStatus(v *unstructured.Unstructured, st vmiStatus) bool {
	status, _, _ := unstructured.NestedMap(v.Object, "status")
	if status["phase"] != st.phase {
		return false
	}
	if st.node == "" {
		return true
	}
	pods, _ := status["activePods"].(map[string]any)
	return status["nodeName"] == st.node && maps.Equal(pods, st.activePods) && v.GetLabels()[testenv.NodeNameLabel] == st.node
}
