#!/usr/bin/env bash
# helm-assets.sh prepares Helm, for the chart's tests (deploy/helm), and prints the
# directory that holds it.
#
# No Debian package ships Helm, so it is built from the module proxy through the
# separate module tools/helm, whose go.mod names the command as a tool and pins its
# version (~2 min on 2 cores; cached and reused while the binary reports that version).
#
# Environment:
#   HELM_ASSETS_DIR  cache directory (default:
#                    ${XDG_CACHE_HOME:-$HOME/.cache}/otelcol-kubevirt/helm-<version>)
#
# Only the directory goes to stdout; progress and errors go to stderr.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "${repo_root}/hack/lib/tools.sh"
tools_dir="${repo_root}/tools/helm"
module=helm.sh/helm/v4

version="$(module_version "${tools_dir}" "${module}")"
[[ -n "${version}" ]] || { echo "helm-assets: no ${module} in ${tools_dir}/go.mod" >&2; exit 1; }
assets_dir="${HELM_ASSETS_DIR:-${XDG_CACHE_HOME:-${HOME}/.cache}/otelcol-kubevirt/helm-${version#v}}"

pinned() {
	local out
	out="$("$1" version --short 2>/dev/null)" || return 1
	[[ "${out}" == "${version}+"* || "${out}" == "${version}" ]]
}

# Helm's own build stamps the version (its Makefile's LDFLAGS); without it the
# binary reports only the minor version. Static, as Helm's releases are.
CGO_ENABLED=0 build_tools "${assets_dir}" "${tools_dir}" pinned \
	-ldflags "-s -w -X ${module}/internal/version.version=${version} -X ${module}/internal/version.gitTreeState=clean"
echo "${assets_dir}"
