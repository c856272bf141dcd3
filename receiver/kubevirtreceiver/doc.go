// Package kubevirtreceiver reports, for every running KubeVirt VirtualMachineInstance on
// one node, which hypervisor its libvirt domain uses: kvm, qemu-tcg, mshv or unknown.
// It wires the parts together (receiver.go), decides what each VMI's series is from
// the VMI and what libvirt says (reconcile.go), and emits what changed after a change and
// everything every collection_interval (emit.go). It does not talk to Kubernetes or
// libvirt itself: internal/vmi watches the VMIs, internal/detect reads their domains,
// internal/inventory keeps one record per VMI.
package kubevirtreceiver

//go:generate go tool mdatagen metadata.yaml
