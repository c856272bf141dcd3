package testenv

// TB is the subset of testing.TB that [MustStartLibvirtd] needs. It is
// declared here so that non-test programs using this package do not link
// package testing.
type TB interface {
	Helper()
	Cleanup(func())
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Skipf(format string, args ...any)
}
