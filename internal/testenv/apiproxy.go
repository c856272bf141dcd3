package testenv

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

// APIProxy stands between the clients under test and a real API server, forwarding
// every request as the server's admin. It can cut the clients off (their open requests
// end, their new connections are dropped unanswered, as from a server that went away)
// while the test itself still reaches the API server directly; it counts the lists and
// the expired watches it passes on, which show how a client caught up; and it can edit
// the objects of list and watch responses, to send what the API server would refuse to
// store. It does not fake the API server: every answer is the server's.
type APIProxy struct {
	// Kubeconfig points a client at the proxy.
	Kubeconfig string
	// Lists counts the requests for every VMI at once: lists, and watches that start
	// with the current state (sendInitialEvents).
	Lists atomic.Int64
	// Expired counts the watches refused as too old (HTTP 410 Gone, as a status or as
	// an ERROR event).
	Expired atomic.Int64

	srv       *httptest.Server
	target    *url.URL
	transport http.RoundTripper
	edit      func(obj map[string]any)

	mu         sync.Mutex
	cut        bool
	generation context.Context // ends when the clients are cut off
	cancel     context.CancelFunc
}

// StartAPIProxy starts a proxy to the API server of cfg and writes its kubeconfig into
// dir. edit, if not nil, may change each object of a JSON list or watch response (each
// item of a list, each watch event's object); it runs on the proxy's goroutines.
func StartAPIProxy(cfg *rest.Config, dir string, edit func(obj map[string]any)) (*APIProxy, error) {
	target, err := url.Parse(cfg.Host)
	if err != nil {
		return nil, err
	}
	transport, err := rest.TransportFor(cfg)
	if err != nil {
		return nil, err
	}
	p := &APIProxy{target: target, transport: transport, edit: edit}
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

// Cut ends the clients' open requests and drops their new connections until Restore.
func (p *APIProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	p.cancel()
}

// Restore lets the clients through again.
func (p *APIProxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.cut {
		return
	}
	p.cut = false
	p.generation, p.cancel = context.WithCancel(context.Background())
}

// Close stops the proxy.
func (p *APIProxy) Close() {
	p.mu.Lock()
	p.cancel()
	p.mu.Unlock()
	p.srv.Close()
	if c, ok := p.transport.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

func (p *APIProxy) serve(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	cut, gen := p.cut, p.generation
	p.mu.Unlock()
	if cut {
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			_ = conn.Close()
		}
		return
	}
	q := r.URL.Query()
	watching := q.Get("watch") == "true" || q.Get("watch") == "1"
	if !watching && strings.HasSuffix(r.URL.Path, "/"+VMIResource.Resource) || q.Get("sendInitialEvents") == "true" {
		p.Lists.Add(1)
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
	rc := http.NewResponseController(w)
	isJSON := strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json")
	switch {
	case !watching && isJSON && p.edit != nil:
		p.editList(w, resp.Body)
	case !watching:
		_, _ = io.Copy(w, resp.Body)
	case rc.Flush() != nil: // a watch's headers at once, as kube-apiserver sends them
	case isJSON:
		p.copyEvents(w, rc, resp.Body)
	default: // not JSON: passed on as it comes, without looking into it
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
}

// copyEvents copies a JSON watch stream event by event, flushing each at once,
// counting expiry errors and editing each object.
func (p *APIProxy) copyEvents(w io.Writer, rc *http.ResponseController, body io.Reader) {
	dec, enc := json.NewDecoder(body), json.NewEncoder(w)
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
		if p.edit != nil {
			var obj map[string]any
			if json.Unmarshal(ev.Object, &obj) == nil {
				p.edit(obj)
				if edited, err := json.Marshal(obj); err == nil {
					ev.Object = edited
				}
			}
		}
		if enc.Encode(ev) != nil || rc.Flush() != nil {
			return
		}
	}
}

// editList edits every item of a JSON list, or the one object of a get.
func (p *APIProxy) editList(w io.Writer, body io.Reader) {
	var obj map[string]any
	if err := json.NewDecoder(body).Decode(&obj); err != nil {
		return
	}
	if items, ok := obj["items"].([]any); ok {
		for _, it := range items {
			if o, ok := it.(map[string]any); ok {
				p.edit(o)
			}
		}
	} else {
		p.edit(obj)
	}
	_ = json.NewEncoder(w).Encode(obj)
}
