package lab

import (
	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv"

	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
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
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"
)

// controller does, for the lab's node, what KubeVirt's virt-controller and
// virt-handler do for the part of a VMI's life the collector sees: a new VMI gets a
// launcher pod (virtLauncherPod); the VMI's status follows the pod: Scheduling, then
// Scheduled on its node, Running with status.activePods and runtimeUser once the
// launcher's guest runs (the pod is Ready), Succeeded or Failed when the launcher
// ends. A VirtualMachineInstanceMigration moves a Running VMI to a new launcher pod
// on the same node (migration.go). Deleting a VMI deletes its pods through the owner
// reference, as in KubeVirt.
//
// It does not pause or restart anything, and it writes status and labels in one
// update of the VMI, as KubeVirt does (the VMI CRD has no status subresource).
type controller struct {
	kube     kubernetes.Interface
	dyn      dynamic.Interface
	image    string
	kvm      bool // whether the node advertises KVMResource
	progress func(format string, args ...any)
	// exec runs a command in a pod's compute container (kubectl exec) and returns
	// its output.
	exec func(ctx context.Context, pod *corev1.Pod, command ...string) ([]byte, error)

	vmis       cache.SharedIndexInformer
	pods       cache.SharedIndexInformer
	migrations cache.SharedIndexInformer
	queue      workqueue.TypedRateLimitingInterface[string]
	wg         sync.WaitGroup
}

func newController(kube kubernetes.Interface, dyn dynamic.Interface, image string, kvm bool,
	exec func(context.Context, *corev1.Pod, ...string) ([]byte, error), progress func(string, ...any)) *controller {
	c := &controller{
		kube: kube, dyn: dyn, image: image, kvm: kvm, exec: exec, progress: progress,
		queue: workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]()),
	}
	dynamicInformers := dynamicinformer.NewDynamicSharedInformerFactory(dyn, 0)
	c.vmis = dynamicInformers.ForResource(testenv.VMIResource).Informer()
	c.migrations = dynamicInformers.ForResource(MigrationResource).Informer()
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
	enqueueMigrated := func(obj any) {
		if m, ok := obj.(*unstructured.Unstructured); ok {
			c.queue.Add(m.GetNamespace() + "/" + migratedVMI(m))
		}
	}
	_, _ = c.migrations.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqueueMigrated, UpdateFunc: func(_, o any) { enqueueMigrated(o) },
	})
	return c
}

// run starts the informers and a worker; it returns once the caches are synced.
func (c *controller) run(ctx context.Context) error {
	c.wg.Go(func() { c.vmis.RunWithContext(ctx) })
	c.wg.Go(func() { c.pods.RunWithContext(ctx) })
	c.wg.Go(func() { c.migrations.RunWithContext(ctx) })
	if !cache.WaitForCacheSync(ctx.Done(), c.vmis.HasSynced, c.pods.HasSynced, c.migrations.HasSynced) {
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
		// A conflict only means the cache was behind: not worth a line.
		if ctx.Err() == nil && !apierrors.IsConflict(err) {
			c.progress("VMI %s: %v (retrying)", key, err)
		}
		c.queue.AddRateLimited(key)
		return true
	}
	c.queue.Forget(key)
	return true
}

// vmiStatus is what the controller writes of a VMI's status in its usual course;
// migrations write the rest (migration.go).
type vmiStatus struct {
	phase, node string
	// activePods maps the UID of every launcher pod of the VMI to its node, as
	// KubeVirt's virt-controller lists them: pods that ended stay until deleted.
	activePods map[string]any
	// runtimeUser is the uid of the VMI's first launcher, written once: later it
	// changes only by migration, as in KubeVirt.
	runtimeUser *int64
}

func (c *controller) sync(ctx context.Context, key string) error {
	obj, exists, err := c.vmis.GetIndexer().GetByKey(key)
	if err != nil || !exists {
		return err // a deleted VMI's pods go with it (owner reference)
	}
	v := obj.(*unstructured.Unstructured)
	phase, _, _ := unstructured.NestedString(v.Object, "status", "phase")
	if phase == "Succeeded" || phase == "Failed" {
		return nil
	}
	pods := c.launchersOf(v)
	if len(pods) == 0 {
		if phase != "" && phase != "Pending" && phase != "Scheduling" {
			// The launcher of a started VMI is gone: KubeVirt fails the VMI.
			return c.setStatus(ctx, v, vmiStatus{phase: "Failed"})
		}
		created, err := c.createLauncher(ctx, v, string(v.GetUID()), nil)
		if err != nil || created == nil {
			return err
		}
		return c.setStatus(ctx, v, vmiStatus{phase: "Scheduling", runtimeUser: runAsUser(created)})
	}
	pod := current(v, pods)
	if pod == nil {
		// The pod the VMI runs in is gone, its migration's target not ready.
		return c.setStatus(ctx, v, vmiStatus{phase: "Failed"})
	}
	st := statusFor(pod, phase, pods)
	if !sameStatus(v, st) {
		return c.setStatus(ctx, v, st)
	}
	if m := c.migrationOf(v); m != nil && st.phase == "Running" {
		return c.migrate(ctx, v, m, pods)
	}
	return nil
}

// launcherFor is the launcher pod v gets now, as its annotations say.
func (c *controller) launcherFor(v *unstructured.Unstructured) (*corev1.Pod, error) {
	return virtLauncherPod(v, c.image, c.kvm && v.GetAnnotations()[EmulationAnnotation] != "true")
}

// createLauncher creates a launcher pod for v, with extra labels, named for what it
// is made for (the VMI's UID for its first pod, a migration's for its target) rather
// than at random: a sync working from a pod cache that has not seen the pod yet
// (the event of another write came first) then finds it exists instead of making a
// second. It returns nil and no error when the pod exists already.
func (c *controller) createLauncher(ctx context.Context, v *unstructured.Unstructured, madeFor string, labels map[string]string) (*corev1.Pod, error) {
	pod, err := c.launcherFor(v)
	if err != nil {
		return nil, err
	}
	// As long as the random suffix of GenerateName, and as unlikely to repeat.
	pod.Name, pod.GenerateName = pod.GenerateName+strings.ReplaceAll(madeFor, "-", "")[:5], ""
	maps.Copy(pod.Labels, labels)
	created, err := c.kube.CoreV1().Pods(v.GetNamespace()).Create(ctx, pod, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil, nil // its event comes
	}
	if err != nil {
		return nil, fmt.Errorf("creating a launcher pod: %w", err)
	}
	accel := "TCG"
	if _, kvm := pod.Spec.Containers[0].Resources.Limits[KVMResource]; kvm {
		accel = "/dev/kvm"
	}
	c.progress("VMI %s/%s: launcher pod %s (%s)", v.GetNamespace(), v.GetName(), created.Name, accel)
	return created, nil
}

// launchersOf returns v's launcher pods in the cache, oldest first.
func (c *controller) launchersOf(v *unstructured.Unstructured) []*corev1.Pod {
	var pods []*corev1.Pod
	for _, obj := range c.pods.GetStore().List() {
		pod := obj.(*corev1.Pod)
		if pod.Namespace == v.GetNamespace() && pod.Labels[createdByLabel] == string(v.GetUID()) {
			pods = append(pods, pod)
		}
	}
	slices.SortFunc(pods, func(a, b *corev1.Pod) int { return a.CreationTimestamp.Compare(b.CreationTimestamp.Time) })
	return pods
}

// current is the pod whose guest is the VMI's: its last migration's target once that
// completed, its source until then, else its only (or newest) pod. Nil if that pod is
// gone.
func current(v *unstructured.Unstructured, pods []*corev1.Pod) *corev1.Pod {
	name := pods[len(pods)-1].Name
	if state, _, _ := unstructured.NestedMap(v.Object, "status", "migrationState"); state != nil {
		name, _ = state["sourcePod"].(string)
		if state["completed"] == true && state["failed"] != true {
			name, _ = state["targetPod"].(string)
		}
	}
	for _, p := range pods {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// statusFor is the VMI status that its current pod's state stands for, given the
// VMI's phase now and all its pods.
func statusFor(pod *corev1.Pod, phase string, pods []*corev1.Pod) vmiStatus {
	node := pod.Spec.NodeName
	active := map[string]any{}
	for _, p := range pods {
		active[string(p.UID)] = p.Spec.NodeName
	}
	switch {
	case pod.Status.Phase == corev1.PodSucceeded:
		return vmiStatus{phase: "Succeeded", node: node, activePods: active}
	case pod.Status.Phase == corev1.PodFailed:
		return vmiStatus{phase: "Failed", node: node, activePods: active}
	case node == "":
		return vmiStatus{phase: "Scheduling"}
	case podReady(pod):
		// Ready once the guest runs (virtLauncherPod's probe).
		return vmiStatus{phase: "Running", node: node, activePods: active}
	case phase == "Running" && pod.Status.Phase == corev1.PodRunning:
		// Ready lost: the guest stopped. virt-launcher outlives it (README); virt-handler
		// would mark the VMI Succeeded from the domain's end.
		return vmiStatus{phase: "Succeeded", node: node, activePods: active}
	default:
		return vmiStatus{phase: "Scheduled", node: node, activePods: active}
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

// runAsUser is the uid a launcher pod runs as.
func runAsUser(pod *corev1.Pod) *int64 {
	if sc := pod.Spec.SecurityContext; sc != nil && sc.RunAsUser != nil {
		return sc.RunAsUser
	}
	return ptr.To[int64](0)
}

// setStatus writes st into the VMI's status and its kubevirt.io/nodeName label,
// unless they are already so.
func (c *controller) setStatus(ctx context.Context, cached *unstructured.Unstructured, st vmiStatus) error {
	if sameStatus(cached, st) {
		return nil
	}
	err := c.updateVMI(ctx, cached, func(status map[string]any, labels map[string]string) {
		status["phase"] = st.phase
		if st.node != "" {
			status["nodeName"] = st.node
			status["activePods"] = st.activePods
			labels[testenv.NodeNameLabel] = st.node
		}
		if _, set := status["runtimeUser"]; !set && st.runtimeUser != nil {
			status["runtimeUser"] = *st.runtimeUser
		}
	})
	if err == nil && st.phase != phaseOf(cached) {
		c.progress("VMI %s/%s: %s", cached.GetNamespace(), cached.GetName(), st.phase)
	}
	return err
}

// updateVMI applies change to the cached VMI's status and labels and writes them in
// one update. The update carries the cached resourceVersion: what change decided
// from may be behind the API server (our own last write not seen yet), and then the
// update conflicts and the VMI is synced again from a newer cache, instead of one
// step's write undoing the next's. A VMI deleted meanwhile is left alone.
func (c *controller) updateVMI(ctx context.Context, cached *unstructured.Unstructured, change func(status map[string]any, labels map[string]string)) error {
	v := cached.DeepCopy()
	status, _, _ := unstructured.NestedMap(v.Object, "status")
	if status == nil {
		status = map[string]any{}
	}
	labels := v.GetLabels()
	if labels == nil {
		labels = map[string]string{}
	}
	change(status, labels)
	v.Object["status"] = status
	v.SetLabels(labels)
	_, err := c.dyn.Resource(testenv.VMIResource).Namespace(v.GetNamespace()).Update(ctx, v, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

func phaseOf(obj *unstructured.Unstructured) string {
	p, _, _ := unstructured.NestedString(obj.Object, "status", "phase")
	return p
}

func sameStatus(v *unstructured.Unstructured, st vmiStatus) bool {
	status, _, _ := unstructured.NestedMap(v.Object, "status")
	if status["phase"] != st.phase {
		return false
	}
	if _, set := status["runtimeUser"]; !set && st.runtimeUser != nil {
		return false
	}
	if st.node == "" {
		return true
	}
	pods, _ := status["activePods"].(map[string]any)
	return status["nodeName"] == st.node && maps.Equal(pods, st.activePods) && v.GetLabels()[testenv.NodeNameLabel] == st.node
}
