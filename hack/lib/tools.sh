# Sourced by hack/*-assets.sh: builds the commands a tools module names (the `tool`
# lines of tools/<name>/go.mod, which pin them) into a cache directory outside the
# checkout, once, in one `go build` so that the packages they share compile once.

# build_tools ASSETS_DIR TOOLS_DIR CHECK [GO BUILD FLAGS...] builds every tool of
# TOOLS_DIR into ASSETS_DIR unless each is there already and `CHECK <path>` accepts
# it. CHECK runs the binary (catching a truncated copy or another version), e.g. by
# comparing its --version with the pinned one. Progress goes to stderr.
build_tools() {
	local assets_dir=$1 tools_dir=$2 check=$3
	shift 3
	local name c
	name="$(basename "${tools_dir}")"
	local commands=() packages=()
	mapfile -t packages < <(cd "${tools_dir}" && GOWORK=off go list tool)
	if [[ ${#packages[@]} -eq 0 ]]; then
		echo "${name}: ${tools_dir}/go.mod names no tools" >&2
		return 1
	fi
	commands=("${packages[@]##*/}")
	mkdir -p "${assets_dir}"
	# Serialise concurrent callers (parallel make targets, two checkouts): one
	# builds, the others wait and then find usable binaries.
	exec 9>"${assets_dir}/.lock"
	flock 9
	local ok=1
	for c in "${commands[@]}"; do
		"${check}" "${assets_dir}/${c}" || { ok=0; break; }
	done
	if [[ ${ok} == 1 ]]; then
		echo "${name}: reusing ${commands[*]} in ${assets_dir}" >&2
		exec 9>&-
		return
	fi
	echo "${name}: building ${commands[*]} into ${assets_dir}" >&2
	local start=${SECONDS} tmp
	tmp="$(mktemp -d "${assets_dir}/.build.XXXXXX")"
	# GOWORK=off keeps a go.work from pulling the tools module into another build
	# graph; -mod=readonly makes a stale go.sum fail instead of being rewritten.
	if ! (cd "${tools_dir}" && GOWORK=off go build -mod=readonly -trimpath -buildvcs=false "$@" -o "${tmp}/" tool); then
		rm -rf "${tmp}"
		return 1
	fi
	for c in "${commands[@]}"; do
		# A rename within the directory: a concurrent reader never sees half a file.
		mv -f "${tmp}/${c}" "${assets_dir}/${c}"
		if ! "${check}" "${assets_dir}/${c}"; then
			echo "${name}: built ${assets_dir}/${c}, but it does not pass ${check}" >&2
			rm -rf "${tmp}"
			return 1
		fi
	done
	rm -rf "${tmp}"
	echo "${name}: built ${commands[*]} in $((SECONDS - start))s" >&2
	exec 9>&-
}

# module_version TOOLS_DIR MODULE prints the version TOOLS_DIR's go.mod pins MODULE at.
module_version() {
	awk -v m="$2" '$1 == m { print $2; exit }' "$1/go.mod"
}
