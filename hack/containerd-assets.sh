#!/usr/bin/env bash
# containerd-assets.sh prepares containerd, its runc shim and ctr for the real node
# (internal/cluster) and prints the directory that holds them.
#
# Debian 12 ships containerd 1.6, whose support kubelet 1.37 drops, so containerd
# 2.x is built from the module proxy through the separate module tools/containerd,
# whose go.mod names the commands as tools and pins the version (~1.5 min on 2
# cores, cached and reused while each binary reports that version). runc and the
# CNI plugins come from Debian (hack/install-deps.sh).
#
# Environment:
#   CONTAINERD_ASSETS_DIR  cache directory (default:
#                          ${XDG_CACHE_HOME:-$HOME/.cache}/otelcol-kubevirt/containerd-<version>)
#
# Only the directory goes to stdout; progress and errors go to stderr.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "${repo_root}/hack/lib/tools.sh"
tools_dir="${repo_root}/tools/containerd"
module=github.com/containerd/containerd/v2

version="$(module_version "${tools_dir}" "${module}")"
[[ -n "${version}" ]] || { echo "containerd-assets: no ${module} in ${tools_dir}/go.mod" >&2; exit 1; }
assets_dir="${CONTAINERD_ASSETS_DIR:-${XDG_CACHE_HOME:-${HOME}/.cache}/otelcol-kubevirt/containerd-${version#v}}"

pinned() {
	local out
	out="$("$1" --version 2>/dev/null)" || return 1
	[[ "${out}" == *" ${version}"* ]]
}

# The tags leave out snapshotters for file systems a node here does not have, as
# containerd's own Makefile does when their headers are missing. Static (cgo off),
# as containerd builds its shim.
CGO_ENABLED=0 build_tools "${assets_dir}" "${tools_dir}" pinned \
	-tags "no_btrfs no_devmapper no_zfs urfave_cli_no_docs" \
	-ldflags "-s -w -X ${module}/version.Version=${version}"
echo "${assets_dir}"
