#!/usr/bin/env bash
# prometheus-assets.sh prepares a Prometheus server with Kubernetes service discovery
# and prints the directory that holds it.
#
# Debian 12's Prometheus (2.42) is built without Kubernetes service discovery, which
# the README's scrape configuration uses; the real-node test proves that
# configuration, so Prometheus is built from the module proxy through the separate
# module tools/prometheus (pinned there), with only that discovery mechanism
# (Prometheus's remove_all_sd / enable_kubernetes_sd build tags). Other tests keep
# using Debian's. Cached and reused while the binary reports the pinned version.
#
# Environment:
#   PROMETHEUS_ASSETS_DIR  cache directory (default:
#                          ${XDG_CACHE_HOME:-$HOME/.cache}/otelcol-kubevirt/prometheus-<version>)
#
# Only the directory goes to stdout; progress and errors go to stderr.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "${repo_root}/hack/lib/tools.sh"
tools_dir="${repo_root}/tools/prometheus"
module=github.com/prometheus/prometheus

version="$(module_version "${tools_dir}" "${module}")"
[[ -n "${version}" ]] || { echo "prometheus-assets: no ${module} in ${tools_dir}/go.mod" >&2; exit 1; }
assets_dir="${PROMETHEUS_ASSETS_DIR:-${XDG_CACHE_HOME:-${HOME}/.cache}/otelcol-kubevirt/prometheus-${version#v}}"

pinned() {
	local out
	out="$("$1" --version 2>/dev/null)" || return 1
	[[ "${out%%$'\n'*}" == "prometheus, version ${version#v} "* ]]
}

build_tools "${assets_dir}" "${tools_dir}" pinned -tags "remove_all_sd enable_kubernetes_sd" \
	-ldflags "-s -w -X github.com/prometheus/common/version.Version=${version#v}"
echo "${assets_dir}"
