# The otelcol-kubevirt image for deploy/kubernetes. The collector links libvirt's
# client library (cgo), so it is built against libvirt-dev and runs with libvirt0.
#
#   docker build -t <registry>/otelcol-kubevirt:<tag> .
#
# `make image` builds this file with buildah (no Docker daemon), from local stand-ins
# for the two base images, and `make test` runs the result as the DaemonSet on a real
# kubelet node. The bases are build arguments for that; their defaults are the public
# images an ordinary `docker build` uses.
ARG GO_IMAGE=golang:1.26-bookworm
ARG BASE_IMAGE=debian:bookworm-slim

FROM ${GO_IMAGE} AS build
RUN apt-get update && apt-get install -y --no-install-recommends libvirt-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cd cmd/otelcol-kubevirt && CGO_ENABLED=1 go build -trimpath -o /out/otelcol-kubevirt .

FROM ${BASE_IMAGE}
RUN apt-get update && apt-get install -y --no-install-recommends libvirt0 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/otelcol-kubevirt /usr/local/bin/otelcol-kubevirt
COPY cmd/otelcol-kubevirt/config.yaml /etc/otelcol-kubevirt/config.yaml
# Root on purpose: see the securityContext note in deploy/kubernetes/daemonset.yaml.
USER 0
EXPOSE 9464 13133
ENTRYPOINT ["/usr/local/bin/otelcol-kubevirt"]
CMD ["--config=/etc/otelcol-kubevirt/config.yaml"]
