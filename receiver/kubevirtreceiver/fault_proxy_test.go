package kubevirtreceiver

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
	"k8s.io/client-go/rest"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv"
)

// statusOverride is the annotation whose value (JSON) apiProxy sends in place of a
// VMI's status. The VMI CRD types status.phase, nodeName, activePods and runtimeUser,
// so the API server refuses to store mistyped ones; a server with a laxer schema, or
// another KubeVirt version, could still send them, and this is how the tests do.
const statusOverride = "test.otelcol-kubevirt.io/status"

// apiProxy stands between a receiver and the real API server. It forwards every
// request, authenticating as the harness's admin, and can:
//   - cut the receiver off (its open watches end, new connections are dropped) while
//     the API server itself stays reachable for the test;
//   - rewrite VMIs in list and watch responses, replacing each status with its
//     statusOverride annotation;
//   - count the lists and the expired watches it passes on, which show how the
//     receiver caught up.
type apiProxy struct {
	// Kubeconfig points a client at the proxy.
	Kubeconfig string
	// Rewritten counts the VMIs sent with their status replaced.
	Rewritten atomic.Int64
	// Lists counts the requests for every VMI at once: lists, and watches that start
	// with the current state (sendInitialEvents).
	Lists atomic.Int64
	// Expired counts the watches refused as too old (HTTP 410 Gone, as a status or as
	// an ERROR event).
	Expired atomic.Int64

	srv       *httptest.Server
	target    *url.URL
	transport http.RoundTripper

	mu         sync.Mutex
	cut        bool
	generation context.Context // ends when the receiver is cut off
	cancel     context.CancelFunc
}

// startAPIProxy starts a proxy in front of api, closed when the test ends.
func startAPIProxy(t *testing.T, api *testenv.APIServer) *apiProxy {
	t.Helper()
	target, err := url.Parse(api.Config.Host)
	require.NoError(t, err)
	transport, err := rest.TransportFor(api.Config)
	require.NoError(t, err)
	p := &apiProxy{target: target, transport: transport}
	p.generation, p.cancel = context.WithCancel(context.Background())
	// HTTP/1.1 (httptest's default), so that a connection can be hijacked and dropped.
	p.srv = httptest.NewTLSServer(http.HandlerFunc(p.serve))
	t.Cleanup(func() {
		p.mu.Lock()
		p.cancel()
		p.mu.Unlock()
		p.srv.Close()
		if c, ok := transport.(interface{ CloseIdleConnections() }); ok {
			c.CloseIdleConnections()
		}
	})
	p.Kubeconfig = filepath.Join(t.TempDir(), "kubeconfig")
	// The proxy's certificate is httptest's own; the API server's is checked by the
	// proxy's transport.
	kubeconfig := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: proxy, cluster: {server: %q, insecure-skip-tls-verify: true}}]
users: [{name: proxy, user: {}}]
contexts: [{name: proxy, context: {cluster: proxy, user: proxy}}]
current-context: proxy
`, p.srv.URL)
	require.NoError(t, os.WriteFile(p.Kubeconfig, []byte(kubeconfig), 0o600))
	return p
}

// Cut ends the receiver's open requests and drops its new connections until Restore.
func (p *apiProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	p.cancel()
}

// Restore lets the receiver through again.
func (p *apiProxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = false
	p.generation, p.cancel = context.WithCancel(context.Background())
}

func (p *apiProxy) serve(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	cut, gen := p.cut, p.generation
	p.mu.Unlock()
	if cut {
		// As an unreachable server: the connection goes away without an answer.
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			_ = conn.Close()
		}
		return
	}
	q := r.URL.Query()
	watching := q.Get("watch") == "true" || q.Get("watch") == "1"
	if !watching && strings.HasSuffix(r.URL.Path, "/virtualmachineinstances") || q.Get("sendInitialEvents") == "true" {
		p.Lists.Add(1)
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stop := context.AfterFunc(gen, cancel)
	defer stop()

	out := r.Clone(ctx)
	out.RequestURI = ""
	out.URL.Scheme, out.URL.Host, out.Host = p.target.Scheme, p.target.Host, p.target.Host
	resp, err := p.transport.RoundTrip(out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusGone {
		p.Expired.Add(1)
	}
	for k, vs := range resp.Header {
		if k != "Content-Length" {
			w.Header()[k] = vs
		}
	}
	w.WriteHeader(resp.StatusCode)
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		_, _ = io.Copy(w, resp.Body)
		return
	}
	if watching {
		p.rewriteStream(w, resp.Body)
		return
	}
	var obj map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&obj); err != nil {
		return
	}
	if items, ok := obj["items"].([]any); ok {
		for _, it := range items {
			p.rewrite(it)
		}
	} else {
		p.rewrite(obj)
	}
	_ = json.NewEncoder(w).Encode(obj)
}

// rewriteStream copies a watch stream event by event, rewriting each event's object.
func (p *apiProxy) rewriteStream(w http.ResponseWriter, body io.Reader) {
	dec, enc := json.NewDecoder(body), json.NewEncoder(w)
	flusher := http.NewResponseController(w)
	for {
		var ev map[string]any
		if err := dec.Decode(&ev); err != nil {
			return
		}
		if obj, _ := ev["object"].(map[string]any); ev["type"] == "ERROR" && obj["code"] == float64(http.StatusGone) {
			p.Expired.Add(1)
		}
		p.rewrite(ev["object"])
		if enc.Encode(ev) != nil || flusher.Flush() != nil {
			return
		}
	}
}

// rewrite replaces obj's status with its statusOverride annotation, if it has one.
func (p *apiProxy) rewrite(obj any) {
	o, ok := obj.(map[string]any)
	if !ok {
		return
	}
	meta, _ := o["metadata"].(map[string]any)
	annotations, _ := meta["annotations"].(map[string]any)
	override, ok := annotations[statusOverride].(string)
	if !ok {
		return
	}
	var status any
	if json.Unmarshal([]byte(override), &status) == nil {
		o["status"] = status
		p.Rewritten.Add(1)
	}
}
