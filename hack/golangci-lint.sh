#!/usr/bin/env bash
# golangci-lint.sh builds the pinned golangci-lint once and prints its path:
#
#   "$(hack/golangci-lint.sh)" run ./...
#
# The version is the one tools/lint/go.mod requires (pinned with its go.sum). golangci-lint
# is built from the module proxy, since its prebuilt releases cannot be downloaded here
# and a Go tool should be built with a Go at least as new as the code it checks. A cold
# build takes several minutes on 2 cores, so the binary is cached outside the checkout
# and reused as long as it runs and reports the pinned version.
#
# Environment:
#   GOLANGCI_LINT_DIR  cache directory (default:
#                      ${XDG_CACHE_HOME:-$HOME/.cache}/otelcol-kubevirt/golangci-lint-<version>)
#
# Only the path goes to stdout; progress and errors go to stderr.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools_dir="${repo_root}/tools/lint"
module="github.com/golangci/golangci-lint/v2"

version="$(awk -v m="${module}" '$1 == m { print $2; exit }' "${tools_dir}/go.mod")"
if [[ ! "${version}" =~ ^v[0-9]+\.[0-9]+\.[0-9]+$ ]]; then
	echo "golangci-lint: cannot read the ${module} version from ${tools_dir}/go.mod" >&2
	exit 1
fi

cache_dir="${GOLANGCI_LINT_DIR:-${XDG_CACHE_HOME:-${HOME}/.cache}/otelcol-kubevirt/golangci-lint-${version#v}}"
bin="${cache_dir}/golangci-lint"
mkdir -p "${cache_dir}"

# Serialise concurrent callers so that only one of them builds.
if command -v flock >/dev/null; then
	exec 9>"${cache_dir}/.lock"
	flock 9
fi

# lint_ok succeeds when the cached binary runs and is the pinned version; running it
# catches a truncated binary left by an interrupted copy.
lint_ok() {
	[[ -x "${bin}" ]] || return 1
	local out
	out="$("${bin}" version --short 2>/dev/null)" || return 1
	[[ "${out}" == "${version#v}" ]]
}

if lint_ok; then
	echo "golangci-lint: reusing ${bin} (${version})" >&2
else
	echo "golangci-lint: building ${version} into ${cache_dir} (several minutes when cold)" >&2
	start=${SECONDS}
	tmp="$(mktemp "${cache_dir}/.golangci-lint.XXXXXX")"
	trap 'rm -f "${tmp}"' EXIT
	# GOWORK=off keeps a go.work at the repository root out of the tool's build;
	# -mod=readonly makes a stale go.sum fail instead of being rewritten.
	(
		cd "${tools_dir}"
		GOWORK=off go build -mod=readonly -trimpath -o "${tmp}" "${module}/cmd/golangci-lint"
	)
	mv -f "${tmp}" "${bin}"
	trap - EXIT
	if ! lint_ok; then
		echo "golangci-lint: built ${bin} but 'version --short' does not report ${version#v}" >&2
		exit 1
	fi
	echo "golangci-lint: built in $((SECONDS - start))s" >&2
fi

echo "${bin}"
