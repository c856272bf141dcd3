package testenv

import "os"

// DaemonsEnv names the environment variable that lets tests start daemons: etcd and
// kube-apiserver, libvirtd with QEMU guests, launcher pods. `make test` sets it
// (hack/with-assets.sh); a plain `go test ./...` leaves it unset, and the tests that
// need a daemon skip and say so, which keeps that run fast and hermetic. The tests of
// the built collector and of the real node skip likewise without the binaries and
// images `make test` names.
const DaemonsEnv = "OTELCOL_KUBEVIRT_DAEMONS"

// RequireDaemons skips tb, naming what it would start, unless DaemonsEnv is set.
func RequireDaemons(tb TB, what string) {
	tb.Helper()
	if os.Getenv(DaemonsEnv) == "" {
		tb.Skipf("skipping: starts %s; `make test` runs it (or set %s=1)", what, DaemonsEnv)
	}
}
