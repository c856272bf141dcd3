package testenv

import (
	"context"
	"errors"
	"os"
	"time"
)

// MustStartAPIServer starts a control plane for a test and stops it in tb.Cleanup. It
// skips the test when the kube-apiserver assets were never built and KUBEBUILDER_ASSETS
// is unset (a plain `go test`); `make test` builds them and sets it, so there a missing
// asset fails the test instead.
func MustStartAPIServer(tb TB) *APIServer {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	api, err := StartAPIServer(ctx)
	if errors.Is(err, ErrKubeAssetsMissing) && os.Getenv("KUBEBUILDER_ASSETS") == "" {
		tb.Skipf("skipping: %v", err)
	}
	if err != nil {
		tb.Fatalf("starting kube-apiserver: %v", err)
	}
	tb.Cleanup(func() {
		if err := api.Stop(); err != nil {
			tb.Errorf("stopping kube-apiserver: %v", err)
		}
	})
	return api
}
