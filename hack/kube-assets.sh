#!/usr/bin/env bash
# kube-assets.sh prepares the Kubernetes commands the tests and the lab run and
# prints the directory that holds them, for use as KUBEBUILDER_ASSETS:
#
#   export KUBEBUILDER_ASSETS="$(hack/kube-assets.sh)"
#
# envtest needs kube-apiserver and etcd from it; the real node (internal/cluster)
# also runs kube-controller-manager, kube-scheduler, kubelet and kube-proxy, and
# kubectl applies the manifests. No distribution package ships them, so they are
# built from the module proxy through the separate module tools/kube, whose go.mod
# names them as tools and pins their version. A cold build takes 15 minutes or
# more on 2 cores; the binaries are cached and reused while each still runs and
# reports the pinned version. etcd comes from the system (Debian's etcd-server) and
# is symlinked next to them, because envtest looks for both in one directory.
#
# Environment:
#   KUBE_ASSETS_DIR  cache directory (default:
#                    ${XDG_CACHE_HOME:-$HOME/.cache}/otelcol-kubevirt/k8s-<version>)
#   ETCD             etcd binary to link (default: etcd on PATH, else /usr/bin/etcd)
#
# Only the directory goes to stdout; progress and errors go to stderr.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "${repo_root}/hack/lib/tools.sh"
tools_dir="${repo_root}/tools/kube"

k8s_version="$(module_version "${tools_dir}" k8s.io/kubernetes)"
if [[ ! "${k8s_version}" =~ ^v1\.([0-9]+)\.[0-9]+$ ]]; then
	echo "kube-assets: cannot read the k8s.io/kubernetes version from ${tools_dir}/go.mod" >&2
	exit 1
fi
k8s_minor="${BASH_REMATCH[1]}"
assets_dir="${KUBE_ASSETS_DIR:-${XDG_CACHE_HOME:-${HOME}/.cache}/otelcol-kubevirt/k8s-${k8s_version#v}}"

etcd_bin="${ETCD:-$(command -v etcd || echo /usr/bin/etcd)}"
if [[ ! -x "${etcd_bin}" ]]; then
	echo "kube-assets: etcd not found (install Debian's etcd-server or set ETCD=/path/to/etcd)" >&2
	exit 1
fi

# pinned succeeds when a binary runs and reports the pinned version.
pinned() {
	local out
	if [[ "$(basename "$1")" == kubectl ]]; then
		# Its first line; not through head, which would make the pipe fail.
		out="$("$1" version --client 2>/dev/null)" || return 1
		[[ "${out%%$'\n'*}" == "Client Version: ${k8s_version}" ]]
	else
		out="$("$1" --version 2>/dev/null)" || return 1
		[[ "${out}" == "Kubernetes ${k8s_version}" ]]
	fi
}

# The version variables are what Kubernetes' own build stamps in
# (hack/lib/version.sh); without them the binaries report v0.0.0-master, which
# breaks the check above and version-derived defaults such as the emulation version.
version_pkg="k8s.io/component-base/version"
build_tools "${assets_dir}" "${tools_dir}" pinned -ldflags "-s -w \
	-X ${version_pkg}.gitVersion=${k8s_version} -X ${version_pkg}.gitMajor=1 \
	-X ${version_pkg}.gitMinor=${k8s_minor} -X ${version_pkg}.gitTreeState=clean"

ln -sfn "${etcd_bin}" "${assets_dir}/etcd"
echo "${assets_dir}"
