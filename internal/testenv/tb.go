package testenv

// TB is the part of testing.TB that the MustStartX wrappers ([MustStartAPIServer],
// [MustStartLibvirtd], [MustStartNode]) and [TestDriverURI] use; *testing.T and *testing.B satisfy it.
// Declaring it keeps package testing out of the package's non-test files.
type TB interface {
	Helper()
	Cleanup(func())
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Skipf(format string, args ...any)
	TempDir() string
}
