#!/bin/sh
# launcher NAMESPACE NAME: the lab's virt-launcher. Runs libvirt the way KubeVirt's
# non-root launcher does and one guest, the VMI's domain <NAMESPACE>_<NAME>, until the
# guest stops (exit 0: the pod Succeeds and the lab's controller marks the VMI
# Succeeded) or the pod is deleted (SIGTERM: the guest is destroyed).
#
# KubeVirt's layout, which the collector relies on: XDG_RUNTIME_DIR=/var/run (the
# image's environment) with the pod's libvirt-runtime emptyDir mounted at
# /var/run/libvirt, so that the daemon's socket and the domain's status file
# (qemu/run/<domain>.xml) are in that emptyDir. Debian's session libvirtd names its
# socket libvirt-sock; virtqemud-sock, the name KubeVirt's daemon uses, links to it.
set -eu
[ $# -eq 2 ] || { echo "usage: launcher NAMESPACE NAME" >&2; exit 2; }
domain="$1_$2"
run="$XDG_RUNTIME_DIR/libvirt"
uri="qemu+unix:///session?socket=$run/virtqemud-sock"

libvirtd &
daemon=$!
trap 'virsh -q -c "$uri" destroy "$domain" >/dev/null 2>&1; kill "$daemon" 2>/dev/null; exit 0' TERM INT
tries=0
until [ -S "$run/libvirt-sock" ]; do
	tries=$((tries + 1))
	[ "$tries" -le 300 ] || { echo "libvirtd did not create $run/libvirt-sock" >&2; exit 1; }
	sleep 0.1
done
ln -sf libvirt-sock "$run/virtqemud-sock"

# kvm when the device plugin gave this pod /dev/kvm, else TCG: as KubeVirt with
# useEmulation, which also starts such VMIs without /dev/kvm.
type=qemu
[ -r /dev/kvm ] && [ -w /dev/kvm ] && type=kvm
cat >"$HOME/domain.xml" <<XML
<domain type='$type'>
  <name>$domain</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices/>
</domain>
XML
virsh -q -c "$uri" define "$HOME/domain.xml" >/dev/null
virsh -q -c "$uri" start "$domain" >/dev/null
echo "guest $domain started (domain type $type)"
# The pod's readiness probe: the domain runs.
touch "$HOME/healthy"

while state=$(virsh -q -c "$uri" domstate "$domain" 2>/dev/null) && { [ "$state" = running ] || [ "$state" = paused ]; }; do
	sleep 1 &
	wait $! || true
done
echo "guest $domain is ${state:-gone}"
rm -f "$HOME/healthy"
# Not waiting for libvirtd: the container ends with this script, and its runtime
# kills what is left.
kill "$daemon" 2>/dev/null || true
exit 0
