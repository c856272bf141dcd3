// The releases whose CRDs the manifests in deploy/ are validated against: the
// OpenTelemetry Operator's OpenTelemetryCollector (deploy/operator) and the Prometheus
// Operator's ServiceMonitor, PodMonitor and PrometheusRule (deploy/prometheus,
// deploy/helm). Their tests read the CRDs from these modules' source, fetched with
// `go mod download` (checked against go.sum) and cached afterwards
// (testenv.PinnedModuleDir). Nothing imports the modules, so `go mod tidy` would drop
// them: do not tidy. To move to another release, change its version below and run
// `GOFLAGS=-mod=mod go mod download <module>` here (it rewrites go.sum); for the
// OpenTelemetry Operator, also the version README.md names (a test checks that they
// agree).
module github.com/otelcol-kubevirt/otelcol-kubevirt/tools/crds

go 1.26.0

require (
	github.com/open-telemetry/opentelemetry-operator v0.148.0
	github.com/prometheus-operator/prometheus-operator v0.94.0
)
