package kubevirtreceiver

import (
	"encoding/json"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv"
)

// statusOverride is the annotation whose value (JSON) the tests' API proxy sends in
// place of a VMI's status. The VMI CRD types status.phase, nodeName, activePods and
// runtimeUser, so the API server refuses to store mistyped ones; a server with a laxer
// schema, or another KubeVirt version, could still send them, and this is how the
// tests do.
const statusOverride = "test.otelcol-kubevirt.io/status"

// apiProxy is a testenv.APIProxy in front of the test's API server that replaces each
// VMI's status with its statusOverride annotation, if it has one.
type apiProxy struct {
	*testenv.APIProxy
	// Rewritten counts the VMIs sent with their status replaced.
	Rewritten atomic.Int64
}

// startAPIProxy starts the proxy, closed when the test ends.
func startAPIProxy(t *testing.T, api *testenv.APIServer) *apiProxy {
	t.Helper()
	p := &apiProxy{}
	var err error
	p.APIProxy, err = testenv.StartAPIProxy(api.Config, t.TempDir(), p.overrideStatus)
	require.NoError(t, err)
	t.Cleanup(p.Close)
	return p
}

func (p *apiProxy) overrideStatus(obj map[string]any) {
	meta, _ := obj["metadata"].(map[string]any)
	annotations, _ := meta["annotations"].(map[string]any)
	override, ok := annotations[statusOverride].(string)
	if !ok {
		return
	}
	var status any
	if json.Unmarshal([]byte(override), &status) == nil {
		obj["status"] = status
		p.Rewritten.Add(1)
	}
}
