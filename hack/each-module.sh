#!/usr/bin/env bash
# each-module.sh DIR... -- COMMAND [ARGS...] runs COMMAND in each Go module directory
# DIR (relative to the repository root), one after the other, since `./...` stops at a
# module's boundary. Every module runs even after one fails; the exit status is the
# first failure's, and the failing modules are named at the end.
set -uo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

dirs=()
while [[ $# -gt 0 && "$1" != "--" ]]; do
	dirs+=("$1")
	shift
done
if [[ $# -lt 2 || ${#dirs[@]} -eq 0 ]]; then
	echo "usage: $0 DIR... -- COMMAND [ARGS...]" >&2
	exit 2
fi
shift

status=0
failed=()
for d in "${dirs[@]}"; do
	echo "== ${d}: $*" >&2
	(cd "${repo_root}/${d}" && "$@")
	rc=$?
	if [[ ${rc} -ne 0 ]]; then
		[[ ${status} -eq 0 ]] && status=${rc}
		failed+=("${d}")
	fi
done
if [[ ${#failed[@]} -gt 0 ]]; then
	echo "failed in: ${failed[*]}" >&2
fi
exit "${status}"
