#!/usr/bin/env bash
# golangci-lint.sh builds the pinned golangci-lint once and prints its path:
#
#   "$(hack/golangci-lint.sh)" run ./...
#
# The version is the one tools/lint/go.mod names as a tool (pinned with its go.sum).
# golangci-lint is built from the module proxy, since its prebuilt releases cannot be
# downloaded here and a Go tool should be built with a Go at least as new as the code
# it checks. A cold build takes ~4 minutes on 2 cores, so the binary is cached outside
# the checkout and reused while it reports the pinned version.
#
# Environment:
#   GOLANGCI_LINT_DIR  cache directory (default:
#                      ${XDG_CACHE_HOME:-$HOME/.cache}/otelcol-kubevirt/golangci-lint-<version>)
#
# Only the path goes to stdout; progress and errors go to stderr.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "${repo_root}/hack/lib/tools.sh"
tools_dir="${repo_root}/tools/lint"
module="github.com/golangci/golangci-lint/v2"

version="$(module_version "${tools_dir}" "${module}")"
[[ -n "${version}" ]] || { echo "golangci-lint: no ${module} in ${tools_dir}/go.mod" >&2; exit 1; }
cache_dir="${GOLANGCI_LINT_DIR:-${XDG_CACHE_HOME:-${HOME}/.cache}/otelcol-kubevirt/golangci-lint-${version#v}}"

pinned() {
	local out
	out="$("$1" version --short 2>/dev/null)" || return 1
	[[ "${out}" == "${version#v}" ]]
}

build_tools "${cache_dir}" "${tools_dir}" pinned
echo "${cache_dir}/golangci-lint"
