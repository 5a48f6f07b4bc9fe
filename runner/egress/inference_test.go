package egress

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nemoclaw/nemoclaw/runner/policy"
)

// echoRouter stands in for the inference router: it answers with what it
// saw (host, path, the credential headers it was left) and streams two
// events with a flush between them.
type echoRouter struct {
	mu   sync.Mutex
	seen []string
}

func (e *echoRouter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	e.seen = append(e.seen, r.Method+" "+r.Host+" "+r.URL.Path+" proxy-auth="+r.Header.Get("Proxy-Authorization"))
	e.mu.Unlock()
	w.Header().Set("Content-Type", "text/event-stream")
	_, _ = io.WriteString(w, "data: one\n\n")
	w.(http.Flusher).Flush()
	_, _ = io.WriteString(w, "data: two\n\n")
}

// TestInferenceRouted: with a router configured, inference.local reaches
// it through the proxy (absolute-form http, and https and http inside a
// CONNECT tunnel terminated with the sandbox CA) and on the direct
// listeners (ServeInference), never the host's resolver; other ports are
// refused with a reason; calls are audited as Inference Activity.
func TestInferenceRouted(t *testing.T) {
	t.Parallel()
	res := &countingResolver{}
	rt := &echoRouter{}
	h := newHarness(t, pol(map[string][]*policy.Endpoint{"api": {ep("api.test", 443, loopOK)}}),
		func(c *Config) { c.Resolver, c.Inference = res, rt })
	c := h.client(false)
	for _, u := range []string{"http://inference.local/v1/models", "https://inference.local/v1/models"} {
		req, _ := http.NewRequest("GET", u, nil)
		req.Header.Set("Proxy-Authorization", "Basic c2VjcmV0")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", u, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "data: one\n\ndata: two\n\n" {
			t.Fatalf("%s: %d %q", u, resp.StatusCode, b)
		}
	}
	st, body, _ := h.do(t, c, "GET", "http://inference.local:8080/v1/models", "", nil)
	if st != 403 || !strings.Contains(body, "ports 80 (http) and 443 (https) only") {
		t.Fatalf("inference.local:8080: %d %s", st, body)
	}
	// The direct listeners, as a client that ignores the proxy variables
	// reaches them (here on 127.0.0.1, in the test's netns).
	for _, useTLS := range []bool{false, true} {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go func() { _ = h.p.ServeInference(l, useTLS) }()
		scheme := "http"
		if useTLS {
			scheme = "https"
		}
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: h.caPool, ServerName: "inference.local"}}
		req, _ := http.NewRequest("GET", scheme+"://"+l.Addr().String()+"/v1/models", nil)
		req.Host = "inference.local"
		resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			t.Fatalf("direct %s: %v", scheme, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(string(b), "data: one") {
			t.Fatalf("direct %s: %d %q", scheme, resp.StatusCode, b)
		}
	}
	rt.mu.Lock()
	seen := strings.Join(rt.seen, "\n")
	rt.mu.Unlock()
	if strings.Contains(seen, "c2VjcmV0") || strings.Count(seen, "GET inference.local") != 4 {
		t.Fatalf("router saw:\n%s", seen)
	}
	if got := res.asked(); len(got) != 0 {
		t.Fatalf("names sent to the host resolver: %q", got)
	}
	h.p.AuditInference(InferenceEvent{Route: "main", Plugin: "nvidia", Model: "m", Method: "POST", Path: "/v1/chat/completions",
		Status: 200, Stream: true, PromptTokens: 9, CompletionTokens: 3, Latency: 1500 * time.Microsecond, TTFB: time.Millisecond})
	h.p.FlushAudit()
	var found bool
	for _, line := range strings.Split(strings.TrimSpace(h.audit.String()), "\n") {
		var ev Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		if ev.Class == "Inference Activity" {
			found = ev.Rule == "main" && ev.Model == "m" && ev.PromptTokens == 9 && ev.CompletionTokens == 3 && ev.LatencyUs == 1500 && ev.Status == 200
		}
	}
	if !found {
		t.Fatalf("no Inference Activity line in:\n%s", h.audit.String())
	}
}
