#!/usr/bin/env bash
# images.sh builds container images without a Docker daemon, with buildah:
#
#   hack/images.sh collector   the collector image from the repository's Dockerfile,
#                              left as the docker-archive bin/otelcol-kubevirt-image.tar
#                              (what any node can import); prints its size and contents
#   hack/images.sh lab         the lab node's own images: the pods' sandbox (pause) and
#                              KubeVirt's virt-launcher (hack/kubevirt-assets.sh builds
#                              its binaries first if they are not cached); prints the
#                              directory of their docker-archives
#
# There is no registry here, so the Debian base both start from is made locally, once,
# with debootstrap, and a Go toolchain image is made from it with the machine's Go in
# place of golang:1.26-bookworm. They live in buildah's storage
# (/var/lib/containers/storage), outside the checkout, and are reused; so are the
# Dockerfiles' layers (--layers). The module proxy's TLS certificate is signed by a
# CA only this machine trusts, so builds see the machine's CA bundle, and its module
# and build caches to save the downloads and compiles.
#
# Environment:
#   IMAGE_CACHE_DIR  where the lab's archives go (default:
#                    ${XDG_CACHE_HOME:-$HOME/.cache}/otelcol-kubevirt/images)
#   DEBIAN_MIRROR    debootstrap's mirror (default http://deb.debian.org/debian)
#   IMAGE_NO_CACHE   1: build every step of the Dockerfiles again instead of reusing
#                    buildah's cached layers (CI does, with empty Go caches, to build
#                    as a new machine does)
#
# Progress goes to stderr; `lab` prints only the directory to stdout.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache_dir="${IMAGE_CACHE_DIR:-${XDG_CACHE_HOME:-${HOME}/.cache}/otelcol-kubevirt/images}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

base_image=localhost/otelcol-kubevirt-lab/debian:bookworm-slim
go_image=localhost/otelcol-kubevirt-lab/golang:$(go env GOVERSION | sed -E 's/^go([0-9]+\.[0-9]+).*/\1/')-bookworm
collector_image=localhost/otelcol-kubevirt:latest
collector_archive="${repo_root}/bin/otelcol-kubevirt-image.tar"
pause_image=localhost/otelcol-kubevirt-lab/pause:latest
# Named after the KubeVirt release it runs (tools/kubevirt/go.mod).
kubevirt_version="$(awk '$1 == "kubevirt.io/kubevirt" { print $2; exit }' "${repo_root}/tools/kubevirt/go.mod")"
virt_launcher_image=localhost/otelcol-kubevirt-lab/virt-launcher:${kubevirt_version}
# The lab's images' sources, and the label that records what an image was built from.
lab_images="${repo_root}/internal/cmd/kubevirt-lab/images"
source_label=otelcol-kubevirt.source

log() { echo "images: $*" >&2; }

have_image() { buildah images --quiet "$1" >/dev/null 2>&1; }

image_id() { buildah images --quiet --no-trunc "$1" | head -n 1; }

# bud builds a Dockerfile with the local bases and the machine's CA bundle and Go caches.
# On a new machine the caches do not exist yet, and buildah refuses to mount a missing
# directory: make them, empty, as go itself would on its first download or build.
bud() {
	local modcache gocache
	modcache="$(go env GOMODCACHE)"
	gocache="$(go env GOCACHE)"
	mkdir -p "${modcache}" "${gocache}"
	local cache=--layers
	[[ "${IMAGE_NO_CACHE:-}" == 1 ]] && cache=--no-cache
	buildah bud --isolation chroot --pull-never "${cache}" --quiet \
		--build-arg "GO_IMAGE=${go_image}" --build-arg "BASE_IMAGE=${base_image}" \
		--volume /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro \
		--volume "${modcache}:/go/pkg/mod" \
		--volume "${gocache}:/root/.cache/go-build" \
		"$@" >/dev/null
}

# archive writes image $1 as the docker-archive $2, unless $2 already holds that image.
archive() {
	local id
	id="$(image_id "$1")"
	if [[ -f "$2" && "$(cat "$2.id" 2>/dev/null)" == "${id}" ]]; then
		return
	fi
	rm -f "$2" "$2.id"
	buildah push --quiet "$1" "docker-archive:$2:$1" >/dev/null
	echo "${id}" >"$2.id"
}

ensure_bases() {
	mkdir -p "${cache_dir}"
	exec 9>"${cache_dir}/.lock"
	flock 9
	if ! have_image "${base_image}"; then
		log "making ${base_image} with debootstrap (a minute or more)"
		local rootfs="${cache_dir}/rootfs.tmp"
		rm -rf "${rootfs}"
		debootstrap --variant=minbase bookworm "${rootfs}" "${mirror}" >"${cache_dir}/debootstrap.log" 2>&1 ||
			{ tail -n 20 "${cache_dir}/debootstrap.log" >&2; exit 1; }
		# As in debian:bookworm-slim: no package lists, caches or docs.
		rm -rf "${rootfs}"/var/lib/apt/lists/* "${rootfs}"/var/cache/apt/*.bin "${rootfs}"/usr/share/doc/* "${rootfs}"/usr/share/man/*
		local c
		c="$(buildah from scratch)"
		buildah copy --quiet "$c" "${rootfs}" / >/dev/null
		buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd bash "$c"
		buildah commit --quiet --rm "$c" "${base_image}" >/dev/null
		rm -rf "${rootfs}"
	fi
	if ! have_image "${go_image}"; then
		log "making ${go_image}: ${base_image}, gcc and the machine's Go $(go env GOVERSION)"
		local c
		c="$(buildah from --pull-never "${base_image}")"
		buildah run --isolation chroot "$c" -- sh -c 'apt-get update -qq && apt-get install -y -qq --no-install-recommends gcc libc6-dev make pkg-config ca-certificates >/dev/null && rm -rf /var/lib/apt/lists/*'
		buildah copy --quiet "$c" "$(go env GOROOT)" /usr/local/go >/dev/null
		buildah config --env GOPATH=/go --env PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$c"
		buildah commit --quiet --rm "$c" "${go_image}" >/dev/null
	fi
	flock -u 9
}

build_collector() {
	ensure_bases
	log "building ${collector_image} from Dockerfile"
	local start=${SECONDS}
	bud -t "${collector_image}" -f "${repo_root}/Dockerfile" "${repo_root}"
	mkdir -p "$(dirname "${collector_archive}")"
	archive "${collector_image}" "${collector_archive}"
	log "built in $((SECONDS - start))s"
	describe_collector "${collector_image}"
}

# describe_collector prints what users get: the image's size, how it runs, what is in it.
describe_collector() {
	local c mnt
	echo "${collector_image} ($(image_id "$1" | cut -c1-19))"
	echo "  archive:     ${collector_archive} ($(du -h "${collector_archive}" | cut -f1))"
	echo "  size:        $(buildah images --format '{{.Size}}' "$1" | head -n 1) uncompressed"
	buildah inspect --type image --format '  entrypoint:  {{.OCIv1.Config.Entrypoint}} {{.OCIv1.Config.Cmd}}
  user:        {{.OCIv1.Config.User}}
  ports:       {{range $p, $_ := .OCIv1.Config.ExposedPorts}}{{$p}} {{end}}
' "$1"
	c="$(buildah from --pull-never "$1")"
	mnt="$(buildah mount "$c")"
	echo "  collector:   /usr/local/bin/otelcol-kubevirt ($(du -h "${mnt}/usr/local/bin/otelcol-kubevirt" | cut -f1)), /etc/otelcol-kubevirt/config.yaml"
	echo "  packages:    $(dpkg-query --admindir="${mnt}/var/lib/dpkg" -W -f '${Package}\n' | wc -l) Debian packages, libvirt0 $(dpkg-query --admindir="${mnt}/var/lib/dpkg" -W -f '${Version}' libvirt0) among them"
	buildah umount "$c" >/dev/null
	buildah rm "$c" >/dev/null
}

build_lab() {
	ensure_bases
	mkdir -p "${cache_dir}"
	# The pause image is built again only when what it is built from changes: its
	# source's content and the Go that compiles it, recorded as a label of the image.
	# Not the file's modification time, which every checkout (a new worktree, a merge
	# that moves the folder) sets anew.
	local pause_src key
	pause_src="${lab_images}/pause"
	key="$(cat "${pause_src}"/*.go | sha256sum | cut -d' ' -f1) $(go env GOVERSION)"
	if ! have_image "${pause_image}" ||
		[[ "$(buildah inspect --type image --format "{{index .OCIv1.Config.Labels \"${source_label}\"}}" "${pause_image}")" != "${key}" ]]; then
		log "building ${pause_image}"
		local tmp c
		tmp="$(mktemp -d)"
		(cd "${repo_root}" && CGO_ENABLED=0 go build -trimpath -o "${tmp}/pause" "${pause_src}")
		c="$(buildah from scratch)"
		buildah copy --quiet "$c" "${tmp}/pause" /pause >/dev/null
		buildah config --entrypoint '["/pause"]' --label "${source_label}=${key}" "$c"
		buildah commit --quiet --rm "$c" "${pause_image}" >/dev/null
		rm -rf "${tmp}"
	fi
	archive "${pause_image}" "${cache_dir}/pause.tar"
	build_virt_launcher
	archive "${virt_launcher_image}" "${cache_dir}/virt-launcher.tar"
	echo "${cache_dir}"
}

# build_virt_launcher builds the launcher pods' image: KubeVirt's binaries and its
# libvirt configuration files (both from the module tools/kubevirt pins) with the
# files of images/virt-launcher, put together in one build context. buildah's layer
# cache matches COPY by the files' content, not their path or modification time, so
# the Debian packages' layer is built once and the rest again only when a file
# changes; a new checkout or build directory reuses them all.
build_virt_launcher() {
	local bin_dir module_dir ctx
	bin_dir="$("${repo_root}/hack/kubevirt-assets.sh")"
	module_dir="$(cd "${repo_root}/tools/kubevirt" && export GOWORK=off && go mod download kubevirt.io/kubevirt && go list -m -f '{{.Dir}}' kubevirt.io/kubevirt)"
	[[ -d "${module_dir}/cmd/virt-launcher" ]] || { log "no cmd/virt-launcher in kubevirt.io/kubevirt's module (${module_dir})"; exit 1; }
	ctx="$(mktemp -d "${cache_dir}/virt-launcher-context.XXXXXX")"
	cp "${lab_images}/virt-launcher/"* "${ctx}/"
	mkdir "${ctx}/kubevirt"
	local f
	for f in qemu.conf virtqemud.conf qemu nsswitch.conf; do
		cp "${module_dir}/cmd/virt-launcher/${f}" "${ctx}/kubevirt/${f}"
	done
	# Hard links where the cache and the context share a file system: no copy of
	# the binaries' hundred megabytes.
	for f in virt-launcher virt-launcher-monitor; do
		ln "${bin_dir}/${f}" "${ctx}/${f}" 2>/dev/null || cp "${bin_dir}/${f}" "${ctx}/${f}"
	done
	log "building ${virt_launcher_image} (a few minutes the first time: QEMU and libvirt)"
	bud -t "${virt_launcher_image}" "${ctx}" || { rm -rf "${ctx}"; exit 1; }
	rm -rf "${ctx}"
}

case "${1:-}" in
collector) build_collector ;;
lab) build_lab ;;
*)
	echo "usage: $0 collector|lab" >&2
	exit 2
	;;
esac
