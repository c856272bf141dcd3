package testenv

import (
	"fmt"
	"os"
)

// DaemonsEnv names the environment variable that lets tests start daemons: etcd and
// kube-apiserver, libvirtd with QEMU guests, launcher pods. `make test` sets it
// (hack/with-assets.sh); a plain `go test ./...` leaves it unset, and the tests that
// need a daemon skip and say so, which keeps that run fast and hermetic. The tests of
// the built collector and of the real node skip likewise without the binaries and
// images `make test` names; with DaemonsEnv set they fail instead (Unavailable).
const DaemonsEnv = "OTELCOL_KUBEVIRT_DAEMONS"

// RequireDaemons skips tb, naming what it would start, unless DaemonsEnv is set.
func RequireDaemons(tb TB, what string) {
	tb.Helper()
	if os.Getenv(DaemonsEnv) == "" {
		tb.Skipf("skipping: starts %s; `make test` runs it (or set %s=1)", what, DaemonsEnv)
	}
}

// Unavailable reports that something tb needs is missing (root, libvirtd, a built
// binary). Without DaemonsEnv, in a plain `go test`, tb skips and says why. With it,
// as under `make test`, tb fails: `make test` promises every test, and `go test`
// without -v prints no skips, so a skipped test would pass there unseen, having
// proven nothing.
func Unavailable(tb TB, format string, args ...any) {
	tb.Helper()
	why := fmt.Sprintf(format, args...)
	if os.Getenv(DaemonsEnv) == "" {
		tb.Skipf("skipping: %s", why)
	}
	tb.Fatalf("cannot run: %s; %s is set, so every test must run here", why, DaemonsEnv)
}
