package soak

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

	"k8s.io/client-go/rest"
)

// apiProxy stands between the collectors and the real API server, forwarding every
// request as the API server's admin. It can cut the collectors off (their open
// requests end, new connections are dropped unanswered, as from a server that went
// away) while the soak itself still reaches the API server directly, and it counts the
// watches the API server refused as expired (HTTP 410 Gone).
type apiProxy struct {
	// Kubeconfig points a collector at the proxy.
	Kubeconfig string
	// Expired counts the watches refused as too old, as a status or an ERROR event.
	Expired atomic.Int64

	srv       *httptest.Server
	target    *url.URL
	transport http.RoundTripper

	mu         sync.Mutex
	cut        bool
	generation context.Context // ends when the collectors are cut off
	cancel     context.CancelFunc
}

// startAPIProxy starts a proxy to the API server of cfg, writing its kubeconfig into dir.
func startAPIProxy(cfg *rest.Config, dir string) (*apiProxy, error) {
	target, err := url.Parse(cfg.Host)
	if err != nil {
		return nil, err
	}
	transport, err := rest.TransportFor(cfg)
	if err != nil {
		return nil, err
	}
	p := &apiProxy{target: target, transport: transport}
	p.generation, p.cancel = context.WithCancel(context.Background())
	// HTTP/1.1 (httptest's default), so that a connection can be hijacked and dropped.
	p.srv = httptest.NewTLSServer(http.HandlerFunc(p.serve))
	p.Kubeconfig = filepath.Join(dir, "proxy.kubeconfig")
	// The proxy's certificate is httptest's own; the API server's is checked by the
	// proxy's transport.
	kubeconfig := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: proxy, cluster: {server: %q, insecure-skip-tls-verify: true}}]
users: [{name: proxy, user: {}}]
contexts: [{name: proxy, context: {cluster: proxy, user: proxy}}]
current-context: proxy
`, p.srv.URL)
	if err := os.WriteFile(p.Kubeconfig, []byte(kubeconfig), 0o600); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// Cut ends the collectors' open requests and drops their new connections until Restore.
func (p *apiProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	p.cancel()
}

// Restore lets the collectors through again.
func (p *apiProxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.cut {
		return
	}
	p.cut = false
	p.generation, p.cancel = context.WithCancel(context.Background())
}

// Close stops the proxy.
func (p *apiProxy) Close() {
	p.mu.Lock()
	p.cancel()
	p.mu.Unlock()
	p.srv.Close()
	if c, ok := p.transport.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

func (p *apiProxy) serve(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	cut, gen := p.cut, p.generation
	p.mu.Unlock()
	if cut {
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			_ = conn.Close()
		}
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	defer context.AfterFunc(gen, cancel)()

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
	q := r.URL.Query()
	rc := http.NewResponseController(w)
	if watching := q.Get("watch") == "true" || q.Get("watch") == "1"; !watching {
		_, _ = io.Copy(w, resp.Body)
		return
	} else if rc.Flush() != nil { // the headers at once, as kube-apiserver sends them
		return
	} else if !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		// Not JSON: passed on as it comes, without looking into it.
		buf := make([]byte, 32<<10)
		for {
			n, err := resp.Body.Read(buf)
			if n > 0 {
				if _, werr := w.Write(buf[:n]); werr != nil || rc.Flush() != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}
	// A JSON watch: copied event by event, flushed at once, looking for expiry errors.
	dec, enc := json.NewDecoder(resp.Body), json.NewEncoder(w)
	for {
		var ev struct {
			Type   string          `json:"type"`
			Object json.RawMessage `json:"object"`
		}
		if err := dec.Decode(&ev); err != nil {
			return
		}
		if ev.Type == "ERROR" {
			var st struct {
				Code int `json:"code"`
			}
			if json.Unmarshal(ev.Object, &st) == nil && st.Code == http.StatusGone {
				p.Expired.Add(1)
			}
		}
		if enc.Encode(ev) != nil || rc.Flush() != nil {
			return
		}
	}
}
