#!/usr/bin/env bash
# with-assets.sh COMMAND [ARGS...] runs COMMAND with the environment the tests, the
# lab and the benchmarks find their binaries and images through, building whatever
# is missing first (each script caches its build outside the checkout):
#
#   KUBEBUILDER_ASSETS         Kubernetes commands and etcd      hack/kube-assets.sh
#   CONTAINERD_ASSETS          containerd, shim, ctr             hack/containerd-assets.sh
#   PROMETHEUS_ASSETS          Prometheus with Kubernetes SD     hack/prometheus-assets.sh
#   HELM_ASSETS                Helm, for deploy/helm's chart     hack/helm-assets.sh
#   LAB_IMAGES_DIR             the lab's pause and virt-launcher hack/images.sh lab
#                              (which builds KubeVirt's binaries first: hack/kubevirt-assets.sh)
#   OTELCOL_KUBEVIRT_BIN       the collector binary              make build
#   OTELCOL_KUBEVIRT_TEST_BIN  the test distribution's binary    make build
#   OTELCOL_KUBEVIRT_IMAGE     the collector image archive       make image
#   OTELCOL_KUBEVIRT_DAEMONS=1 tests may start daemons (kube-apiserver, libvirtd, QEMU)
#
# The last three are only named here: make builds them. A failing script stops
# everything, so a test never runs with part of its environment silently missing.
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

KUBEBUILDER_ASSETS="$("${repo_root}/hack/kube-assets.sh")"
CONTAINERD_ASSETS="$("${repo_root}/hack/containerd-assets.sh")"
PROMETHEUS_ASSETS="$("${repo_root}/hack/prometheus-assets.sh")"
HELM_ASSETS="$("${repo_root}/hack/helm-assets.sh")"
LAB_IMAGES_DIR="$("${repo_root}/hack/images.sh" lab)"
OTELCOL_KUBEVIRT_BIN="${repo_root}/bin/otelcol-kubevirt"
OTELCOL_KUBEVIRT_TEST_BIN="${repo_root}/bin/otelcol-kubevirt-test"
OTELCOL_KUBEVIRT_IMAGE="${repo_root}/bin/otelcol-kubevirt-image.tar"
# Tests may start daemons (internal/testenv.DaemonsEnv); a plain `go test` does not.
OTELCOL_KUBEVIRT_DAEMONS=1
export KUBEBUILDER_ASSETS CONTAINERD_ASSETS PROMETHEUS_ASSETS HELM_ASSETS LAB_IMAGES_DIR OTELCOL_KUBEVIRT_BIN OTELCOL_KUBEVIRT_TEST_BIN OTELCOL_KUBEVIRT_IMAGE OTELCOL_KUBEVIRT_DAEMONS
exec "$@"
