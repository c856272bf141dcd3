# otelcol-kubevirt. `make run` starts the collector; `make test` runs every test.
# See README.md for what each target needs and how long it takes.

GO          ?= go
OCB_VERSION := v0.165.0
BIN         := bin/otelcol-kubevirt
# The test distribution: the collector plus the components only tests use
# (builder-config-test.yaml); its module is test infrastructure, so it lives under
# internal/, and cmd/ holds only the product's command.
TEST_BIN    := bin/otelcol-kubevirt-test
TEST_DIST   := internal/cmd/otelcol-kubevirt-test
# The Go modules: the receiver (what users add to their own collector), the harnesses
# its tests and the lab's share, the lab with the end-to-end tests (the root), and the
# benchmarks of the receiver's internals. Tests, lint and vet run in each.
RECEIVER    := receiver/kubevirtreceiver
MODULES     := $(RECEIVER) internal/testenv . $(RECEIVER)/internal/bench
# Everything the collector binary is built from.
SOURCES     := $(shell find $(RECEIVER) cmd/otelcol-kubevirt -name '*.go' -not -name '*_test.go' -not -path '*/internal/bench/*') \
               $(RECEIVER)/go.mod $(RECEIVER)/go.sum cmd/otelcol-kubevirt/go.mod cmd/otelcol-kubevirt/go.sum
TEST_SOURCES := $(filter-out cmd/otelcol-kubevirt/%,$(SOURCES)) $(wildcard $(TEST_DIST)/*.go) \
               $(TEST_DIST)/go.mod $(TEST_DIST)/go.sum

.PHONY: all deps generate tidy-check lint build image test run stop kube-assets node-assets clean

all: build

# Debian packages: libvirt, QEMU, etcd, Prometheus.
deps:
	@hack/install-deps.sh

# Regenerates the metric code (mdatagen) and the sources of the collector and of its test
# distribution (ocb). The result is committed; CI fails if this changes anything.
generate:
	cd tools/mdatagen && GOWORK=off $(GO) tool mdatagen $(CURDIR)/receiver/kubevirtreceiver/metadata.yaml
	$(GO) run go.opentelemetry.io/collector/cmd/builder@$(OCB_VERSION) --config builder-config.yaml --skip-compilation
	$(GO) run go.opentelemetry.io/collector/cmd/builder@$(OCB_VERSION) --config builder-config-test.yaml --skip-compilation
	gofmt -w cmd/otelcol-kubevirt/*.go $(TEST_DIST)/*.go  # ocb's output is not gofmt'ed

# Fails when a module's go.mod or go.sum is not what `go mod tidy` makes of it (a change
# in one module's imports can change what another module's tests need).
tidy-check:
	hack/each-module.sh $(MODULES) -- $(GO) mod tidy -diff

# Lints every module, test files included, as .golangci.yml says, with the
# golangci-lint that tools/lint/go.mod pins (built once into ~/.cache/otelcol-kubevirt/).
# Type-checking needs libvirt's headers, as building does.
lint: deps
	lint="$$(hack/golangci-lint.sh)" && for m in $(MODULES); do (cd $$m && "$$lint" run ./...) || exit 1; done

build: $(BIN) $(TEST_BIN)

$(BIN): $(SOURCES) | deps
	cd cmd/otelcol-kubevirt && CGO_ENABLED=1 $(GO) build -trimpath -o ../../$(BIN) .

$(TEST_BIN): $(TEST_SOURCES) | deps
	cd $(TEST_DIST) && CGO_ENABLED=1 $(GO) build -trimpath -o $(CURDIR)/$(TEST_BIN) .

# The collector image, from the Dockerfile, with buildah (no Docker daemon needed),
# left as a docker-archive any node can import. Prints its size and contents.
IMAGE := bin/otelcol-kubevirt-image.tar
image: $(IMAGE)

$(IMAGE): $(SOURCES) cmd/otelcol-kubevirt/config.yaml Dockerfile .dockerignore | deps
	hack/images.sh collector

# The Kubernetes commands, containerd, Prometheus and Helm, each built once into a
# cache outside the checkout (hack/*-assets.sh).
kube-assets: deps
	@hack/kube-assets.sh >/dev/null
node-assets: kube-assets
	@hack/containerd-assets.sh >/dev/null
	@hack/prometheus-assets.sh >/dev/null
	@hack/helm-assets.sh >/dev/null

# Every test, with the race detector: unit, integration against real libvirtd and
# kube-apiserver, end to end through the built collector, and the image deployed as
# the DaemonSet on a real kubelet node (deploy/kubernetes). hack/with-assets.sh builds
# the lab's own images and tells the tests where everything is.
test: build image node-assets
	hack/with-assets.sh hack/each-module.sh $(MODULES) -- $(GO) test -race -count=1 -timeout 30m ./...

# The lab: a real single-node Kubernetes with KubeVirt-like launcher pods and the
# collector deployed as its DaemonSet, two VMIs on it. Ctrl-C (or `make stop`) stops
# it and removes everything it made.
run: image node-assets
	$(GO) build -o bin/kubevirt-lab ./internal/cmd/kubevirt-lab
	hack/with-assets.sh bin/kubevirt-lab

# Stops a lab started by `make run` elsewhere (another terminal, or in the background).
LAB_PIDFILE := $(or $(TMPDIR),/tmp)/otelcol-kubevirt-lab.pid
stop:
	@pid=$$(cat $(LAB_PIDFILE) 2>/dev/null) && kill -TERM $$pid 2>/dev/null || { echo "no lab running"; exit 0; }; \
	while kill -0 $$pid 2>/dev/null; do sleep 0.2; done; echo "lab stopped"

clean:
	rm -rf bin

# Benchmarks; docs/benchmarks.md has the figures, what each means and how long it takes
# (~12 min). Each group runs in its own process with its own -benchtime, because one op
# is a detection, one VMI appearing and vanishing, one scrape or one whole measurement
# window. BENCH_WINDOW is each CPU window (docs/benchmarks.md also quotes 5m),
# BENCH_GUESTS the real QEMU guests of the large libvirtd, BENCH_SCRAPE_GUESTS those
# of the scrape comparison.
BENCH_WINDOW        ?= 60s
BENCH_GUESTS        ?= 100
BENCH_SCRAPE_GUESTS ?= 50
BENCH_ENV    = BENCH_WINDOW=$(BENCH_WINDOW) BENCH_GUESTS=$(BENCH_GUESTS) BENCH_SCRAPE_GUESTS=$(BENCH_SCRAPE_GUESTS) $(CURDIR)/hack/with-assets.sh
BENCH_RUN    = $(GO) test -run '^$$' -timeout 60m

.PHONY: bench fuzz soak
bench: build kube-assets
	cd $(RECEIVER) && $(BENCH_RUN) -bench . ./internal/hypervisor ./internal/vmi .
	cd $(RECEIVER)/internal/bench && $(BENCH_ENV) $(BENCH_RUN) -bench 'Detect|LibvirtRPC' -benchtime 5000x .
	cd $(RECEIVER)/internal/bench && $(BENCH_ENV) $(BENCH_RUN) -bench EventToEndpoint -benchtime 100x .
	cd $(RECEIVER)/internal/bench && $(BENCH_ENV) $(BENCH_RUN) -bench 'Memory|CPU|RSS' -benchtime 1x .
	cd $(RECEIVER)/internal/bench && $(BENCH_ENV) $(BENCH_RUN) -bench 'Scrape' -benchtime 300x .

# Fuzzes the domain XML detector for FUZZTIME, starting from the seed corpus in
# internal/hypervisor/testdata/fuzz/FuzzDetect (which `make test` replays every time):
# FuzzDetect (no panic, a reported type, unknown whenever parsing failed). Minimising
# each new input for at most 1000 runs, instead of the default 60 s, keeps the workers
# fuzzing: with the 9-21 KB status files as seeds, the default spent most of the time
# minimising (20k execs in 30 s instead of 1.5M).
FUZZTIME ?= 60s
FUZZ     = $(GO) test -run '^$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 1000x -fuzz
fuzz:
	cd $(RECEIVER) && $(FUZZ) '^FuzzDetect$$' ./internal/hypervisor

# A randomized soak with a truth oracle (internal/soak): VMIs created, run, paused,
# migrated between two nodes, stopped and deleted, libvirtds killed, launcher sockets
# removed, the API server restarted and watches expired, all at random and at once,
# against the built collectors; every endpoint is checked against the oracle at every
# quiet point, and the collectors' goroutines, FDs, threads and RSS must stay flat.
# SOAK_TIME of changes (`make test` runs 60 s of it); SOAK_SEED replays a run (the seed
# and the SOAK_TIME it printed). The test stops itself if it overruns SOAK_TIME by far.
# docs/reliability.md has a 30-minute run's figures.
SOAK_TIME ?= 10m
soak: build kube-assets
	SOAK_TIME=$(SOAK_TIME) SOAK_SEED=$(SOAK_SEED) hack/with-assets.sh $(GO) test -race -count=1 -timeout 0 -run '^TestSoak$$' -v ./internal/soak
