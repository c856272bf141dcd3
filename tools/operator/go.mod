// The OpenTelemetry Operator release whose OpenTelemetryCollector CRD the example in
// deploy/operator is validated against (deploy/operator/apiserver_test.go reads the CRD
// from this module's source, fetched with `go mod download` and then cached). Nothing
// imports the module, so `go mod tidy` would drop the requirement: do not tidy. To move
// to another release, change the version below, run
// `go mod download github.com/open-telemetry/opentelemetry-operator` here (it rewrites
// go.sum) and update the version README.md names (a test checks that they agree).
module github.com/otelcol-kubevirt/otelcol-kubevirt/tools/operator

go 1.26.0

require github.com/open-telemetry/opentelemetry-operator v0.148.0
