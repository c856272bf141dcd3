// Package kubevirtreceiver reports, for every running KubeVirt VirtualMachineInstance on
// one node, which hypervisor its libvirt domain uses: kvm, qemu-tcg, mshv or unknown.
package kubevirtreceiver

//go:generate go tool mdatagen metadata.yaml
