#!/usr/bin/env bash
# kubevirt-assets.sh prepares KubeVirt's virt-launcher and virt-launcher-monitor,
# which the lab's launcher image (hack/images.sh lab) runs in every launcher pod,
# and prints the directory that holds them.
#
# KubeVirt publishes them only inside its own container images, which this machine
# cannot pull, so they are built from the module proxy through the separate module
# tools/kubevirt, whose go.mod names them as tools and pins the release (why that
# release and why its replaces: tools/kubevirt/go.mod). virt-launcher links libvirt
# through cgo (Debian's libvirt-dev). A cold build took 6 minutes on 2 cores shared
# with other builds; the binaries are cached and reused while each still carries the
# pinned module.
#
# Environment:
#   KUBEVIRT_ASSETS_DIR  cache directory (default:
#                        ${XDG_CACHE_HOME:-$HOME/.cache}/otelcol-kubevirt/kubevirt-<version>)
#
# Only the directory goes to stdout; progress and errors go to stderr.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "${repo_root}/hack/lib/tools.sh"
tools_dir="${repo_root}/tools/kubevirt"
module=kubevirt.io/kubevirt

version="$(module_version "${tools_dir}" "${module}")"
[[ -n "${version}" ]] || { echo "kubevirt-assets: no ${module} in ${tools_dir}/go.mod" >&2; exit 1; }
assets_dir="${KUBEVIRT_ASSETS_DIR:-${XDG_CACHE_HOME:-${HOME}/.cache}/otelcol-kubevirt/kubevirt-${version#v}}"

# pinned succeeds when the binary is a whole Go executable built from the pinned
# module: its build information names it as the main module (neither command has
# a --version).
pinned() {
	[[ -x "$1" ]] || return 1
	go version -m "$1" 2>/dev/null | awk -v m="${module}" -v v="${version}" \
		'($1 == "mod" || $1 == "dep") && $2 == m && $3 == v { found = 1 } END { exit !found }'
}

if ! pkg-config --exists libvirt 2>/dev/null; then
	echo "kubevirt-assets: virt-launcher needs libvirt's headers (install Debian's libvirt-dev: hack/install-deps.sh)" >&2
	exit 1
fi

# The version variables are what KubeVirt's own build stamps in
# (staging/src/kubevirt.io/client-go/version); virt-launcher logs them at start.
version_pkg="kubevirt.io/client-go/version"
CGO_ENABLED=1 build_tools "${assets_dir}" "${tools_dir}" pinned -ldflags "-s -w \
	-X ${version_pkg}.gitVersion=${version} -X ${version_pkg}.gitTreeState=clean"
echo "${assets_dir}"
