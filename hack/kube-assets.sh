#!/usr/bin/env bash
# kube-assets.sh prepares the binaries envtest needs (kube-apiserver and etcd)
# and prints the directory that holds them, for use as KUBEBUILDER_ASSETS:
#
#   export KUBEBUILDER_ASSETS="$(hack/kube-assets.sh)"
#
# No distribution package ships kube-apiserver, so it is built from the module
# proxy through the separate module in tools/kube-apiserver (pinned by its
# go.mod/go.sum). A cold build takes several minutes, so the binary is cached
# outside the checkout and reused as long as it still runs and reports the
# pinned version. etcd comes from the system (Debian's etcd-server) and is
# symlinked next to it, because envtest looks for both in one directory.
#
# Environment:
#   KUBE_ASSETS_DIR  cache directory (default:
#                    ${XDG_CACHE_HOME:-$HOME/.cache}/otelcol-kubevirt/k8s-<version>)
#   ETCD             etcd binary to link (default: etcd on PATH, else /usr/bin/etcd)
#
# Only the directory goes to stdout; progress and errors go to stderr.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools_dir="${repo_root}/tools/kube-apiserver"

# The version comes from the tools module so that bumping go.mod there is the
# only change needed, and a bump lands in a fresh cache directory.
k8s_version="$(awk '$1 == "k8s.io/kubernetes" { print $2; exit }' "${tools_dir}/go.mod")"
if [[ ! "${k8s_version}" =~ ^v1\.([0-9]+)\.[0-9]+$ ]]; then
	echo "kube-assets: cannot read the k8s.io/kubernetes version from ${tools_dir}/go.mod" >&2
	exit 1
fi
k8s_minor="${BASH_REMATCH[1]}"

assets_dir="${KUBE_ASSETS_DIR:-${XDG_CACHE_HOME:-${HOME}/.cache}/otelcol-kubevirt/k8s-${k8s_version#v}}"
apiserver="${assets_dir}/kube-apiserver"

etcd_bin="${ETCD:-$(command -v etcd || echo /usr/bin/etcd)}"
if [[ ! -x "${etcd_bin}" ]]; then
	echo "kube-assets: etcd not found (install Debian's etcd-server or set ETCD=/path/to/etcd)" >&2
	exit 1
fi

mkdir -p "${assets_dir}"

# Serialise concurrent callers (e.g. parallel make targets) so that only one of
# them builds; the others wait and then find a usable binary.
if command -v flock >/dev/null; then
	exec 9>"${assets_dir}/.lock"
	flock 9
fi

# apiserver_ok succeeds when the cached binary runs and is the pinned version.
# Running it (rather than only testing for the file) catches truncated or
# foreign-architecture binaries left behind by an interrupted copy.
apiserver_ok() {
	[[ -x "${apiserver}" ]] || return 1
	local out
	out="$("${apiserver}" --version 2>/dev/null)" || return 1
	[[ "${out}" == "Kubernetes ${k8s_version}" ]]
}

if apiserver_ok; then
	echo "kube-assets: reusing ${apiserver} (${k8s_version})" >&2
else
	echo "kube-assets: building kube-apiserver ${k8s_version} into ${assets_dir} (several minutes when cold)" >&2
	start=${SECONDS}
	tmp="$(mktemp "${assets_dir}/.kube-apiserver.XXXXXX")"
	trap 'rm -f "${tmp}"' EXIT
	# The version variables are what Kubernetes' own build stamps in
	# (hack/lib/version.sh); without them the binary reports v0.0.0-master,
	# which breaks the --version check above and version-derived defaults such
	# as the emulation version.
	version_pkg="k8s.io/component-base/version"
	ldflags="-s -w"
	ldflags+=" -X ${version_pkg}.gitVersion=${k8s_version}"
	ldflags+=" -X ${version_pkg}.gitMajor=1"
	ldflags+=" -X ${version_pkg}.gitMinor=${k8s_minor}"
	ldflags+=" -X ${version_pkg}.gitTreeState=clean"
	# GOWORK=off keeps a go.work at the repository root from pulling the
	# tools module into the main build graph; -mod=readonly makes a stale
	# go.sum fail loudly instead of being rewritten behind the committer.
	(
		cd "${tools_dir}"
		GOWORK=off go build -mod=readonly -trimpath -buildvcs=false \
			-ldflags "${ldflags}" -o "${tmp}" .
	)
	# Rename within the directory so a concurrent reader never sees a partial file.
	mv -f "${tmp}" "${apiserver}"
	trap - EXIT
	if ! apiserver_ok; then
		echo "kube-assets: built ${apiserver} but '--version' does not report ${k8s_version}" >&2
		exit 1
	fi
	echo "kube-assets: built kube-apiserver in $((SECONDS - start))s" >&2
fi

ln -sfn "${etcd_bin}" "${assets_dir}/etcd"

echo "${assets_dir}"
