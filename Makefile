# otelcol-kubevirt. `make run` starts the collector; `make test` runs every test.
# See README.md for what each target needs and how long it takes.

GO          ?= go
OCB_VERSION := v0.161.0
BIN         := bin/otelcol-kubevirt
# Everything the collector binary is built from.
SOURCES     := $(shell find receiver internal cmd/otelcol-kubevirt -name '*.go' -not -name '*_test.go') \
               go.mod go.sum cmd/otelcol-kubevirt/go.mod cmd/otelcol-kubevirt/go.sum

.PHONY: all deps generate build test run stop kube-assets clean

all: build

# Debian packages: libvirt, QEMU, etcd, Prometheus.
deps:
	@hack/install-deps.sh

# Regenerates the metric code (mdatagen) and the collector's sources (ocb). The result is
# committed; CI fails if this changes anything.
generate:
	cd receiver/kubevirtreceiver && $(GO) tool mdatagen metadata.yaml
	$(GO) run go.opentelemetry.io/collector/cmd/builder@$(OCB_VERSION) --config builder-config.yaml --skip-compilation
	gofmt -w cmd/otelcol-kubevirt/*.go  # ocb's output is not gofmt'ed

build: $(BIN)

$(BIN): $(SOURCES) | deps
	cd cmd/otelcol-kubevirt && CGO_ENABLED=1 $(GO) build -trimpath -o ../../$(BIN) .

# kube-apiserver for the tests, built once into a cache outside the checkout.
kube-assets: deps
	@hack/kube-assets.sh >/dev/null

# Every test, integration and end to end included, with the race detector.
test: build kube-assets
	KUBEBUILDER_ASSETS="$$(hack/kube-assets.sh)" OTELCOL_KUBEVIRT_BIN="$(CURDIR)/$(BIN)" \
		$(GO) test -race -count=1 ./...

# The lab: a local KubeVirt-like node (kube-apiserver with VMIs, libvirtd with real QEMU
# guests) and the collector with its shipped config watching it. Ctrl-C stops it all.
run: build kube-assets
	$(GO) build -o bin/kubevirt-lab ./cmd/kubevirt-lab
	KUBEBUILDER_ASSETS="$$(hack/kube-assets.sh)" exec bin/kubevirt-lab -collector $(BIN)

# Stops a lab started by `make run` elsewhere (another terminal, or in the background).
LAB_PIDFILE := $(or $(TMPDIR),/tmp)/otelcol-kubevirt-lab.pid
stop:
	@pid=$$(cat $(LAB_PIDFILE) 2>/dev/null) && kill -TERM $$pid 2>/dev/null || { echo "no lab running"; exit 0; }; \
	while kill -0 $$pid 2>/dev/null; do sleep 0.2; done; echo "lab stopped"

clean:
	rm -rf bin
