# The otelcol-kubevirt image for deploy/kubernetes. The collector links libvirt's
# client library (cgo), so it is built against libvirt-dev and runs with libvirt0.
# NOT built or tested in this project's lab (no container runtime there): keep it
# this short, and check it when first building it for real.
#   docker build -t <registry>/otelcol-kubevirt:<tag> .
FROM golang:1.26-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends libvirt-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cd cmd/otelcol-kubevirt && CGO_ENABLED=1 go build -trimpath -o /out/otelcol-kubevirt .

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends libvirt0 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/otelcol-kubevirt /usr/local/bin/otelcol-kubevirt
COPY cmd/otelcol-kubevirt/config.yaml /etc/otelcol-kubevirt/config.yaml
# Root on purpose: see the securityContext note in deploy/kubernetes/daemonset.yaml.
USER 0
EXPOSE 9464
ENTRYPOINT ["/usr/local/bin/otelcol-kubevirt"]
CMD ["--config=/etc/otelcol-kubevirt/config.yaml"]
