#!/bin/sh
# /usr/sbin/virtqemud in the lab's virt-launcher image. virt-launcher starts
# `virtqemud -f /var/run/libvirt/virtqemud.conf`, KubeVirt's QEMU driver daemon;
# Debian 12's libvirt 9.0 is built without the modular daemons, so this runs the
# monolithic libvirtd, which holds the same QEMU driver, with the same configuration,
# in its place (exec: virt-launcher's kill of this pid reaches the daemon).
#
# What differs is the socket names. libvirtd listens on libvirt-sock (and, as root,
# libvirt-sock-ro) and libvirt-admin-sock; virtqemud on virtqemud-sock (as root also
# virtqemud-sock-ro) and virtqemud-admin-sock, which is what virt-launcher and the
# collector dial. The virtqemud names are links to libvirtd's, made before the
# daemon starts: until it listens they lead nowhere, as a socket not yet made.
#
# The directory is libvirt's runtime directory: /var/run/libvirt as root (system
# mode), $XDG_RUNTIME_DIR/libvirt otherwise (session mode; a non-root launcher's
# XDG_RUNTIME_DIR is /var/run, so the same directory, the pod's libvirt-runtime).
set -eu
root=false
[ "$(id -u)" = 0 ] && root=true
if $root; then
	run=/var/run/libvirt
else
	run="${XDG_RUNTIME_DIR:?a non-root launcher needs XDG_RUNTIME_DIR}/libvirt"
fi
mkdir -p "$run"
ln -sfn libvirt-sock "$run/virtqemud-sock"
$root && ln -sfn libvirt-sock-ro "$run/virtqemud-sock-ro"
ln -sfn libvirt-admin-sock "$run/virtqemud-admin-sock"
# A root daemon starts QEMU as the qemu user (KubeVirt's qemu.conf). Production
# nodes have /dev/kvm mode 0666 (udev's rule), and the container's device node
# takes the node's mode; on a node with a stricter /dev/kvm, such as 0660 root, QEMU
# could not open it. This changes the container's own node only.
if $root && [ -c /dev/kvm ]; then
	chmod 0666 /dev/kvm
fi
exec /usr/sbin/libvirtd "$@"
