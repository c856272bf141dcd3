#!/usr/bin/env bash
# Installs the Debian packages the build, the tests and the lab need, if any is missing.
# Idempotent and quiet when everything is there already.
set -euo pipefail

packages=(
	libvirt-dev                # cgo headers and library for libvirt.org/go/libvirt (and KubeVirt's virt-launcher, hack/kubevirt-assets.sh)
	libvirt-daemon             # libvirtd, run by the tests and the lab as a launcher would
	libvirt-daemon-driver-qemu # its QEMU driver
	libvirt-clients            # virsh, for humans debugging the lab
	qemu-system-x86            # real guests, KVM or TCG
	etcd-server                # storage for the test kube-apiserver
	prometheus                 # a real Prometheus scraping the collector in tests
	acl                        # setfacl, to give the unprivileged libvirtd /dev/kvm
	# The real node (internal/cluster) and its images; Kubernetes and containerd
	# themselves are built from the module proxy (hack/kube-assets.sh,
	# hack/containerd-assets.sh).
	runc                        # the OCI runtime containerd starts containers with
	containernetworking-plugins # bridge, host-local, loopback, portmap (in /usr/lib/cni)
	iptables                    # kube-proxy's Service rules, the bridge plugin's masquerade
	conntrack                   # kube-proxy clears stale UDP conntrack entries with it
	buildah                     # builds the images without a Docker daemon
	debootstrap                 # the Debian base those images start from
)

missing=()
for p in "${packages[@]%% *}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "Installing Debian packages: ${missing[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
