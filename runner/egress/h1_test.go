package egress

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/nemoclaw/nemoclaw/internal/testutil"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/nemoclaw/nemoclaw/runner/policy"
)

// plainURL is an absolute-form http:// URL for plain.test.
func plainURL(port int, path string) string {
	return "http://plain.test:" + strconv.Itoa(port) + path
}

func plainPolicy(port int) *policy.Policy {
	return pol(map[string][]*policy.Endpoint{"plain": {ep("plain.test", port, loopOK)}})
}

// waitAudit polls the audit log until an event satisfies ok.
func waitAudit(t *testing.T, h *harness, what string, ok func(Event) bool) Event {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		h.p.FlushAudit()
		for _, line := range strings.Split(strings.TrimSpace(h.audit.String()), "\n") {
			var ev Event
			if jsonUnmarshal(line, &ev) == nil && ok(ev) {
				return ev
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no audit line for %s; audit log:\n%s", what, h.audit.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// rawUpstream serves each accepted connection with fn.
func rawUpstream(t *testing.T, fn func(net.Conn)) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); fn(c) }()
		}
	}()
	return l.Addr().(*net.TCPAddr).Port
}

// TestExpectContinueSharedUpstream uploads with Expect: 100-continue and
// then sends another client's request to the same upstream: each client
// must get its own response (the hand-written loop relayed the 100 as the
// final response and gave the real one to the next client).
func TestExpectContinueSharedUpstream(t *testing.T) {
	t.Parallel()
	_, port := newPlainUpstream(t)
	h := newHarness(t, plainPolicy(port), nil)
	body := strings.Repeat("x", 2<<20)

	a := h.client(false)
	a.Transport.(*http.Transport).ExpectContinueTimeout = 10 * time.Second
	st, got, _ := h.do(t, a, "POST", plainURL(port, "/upload"), body, map[string]string{"Expect": "100-continue"})
	if st != 200 {
		t.Fatalf("upload: status %d: %.200s", st, got)
	}
	if e := decodeEcho(t, got); e.URI != "/upload" || len(e.Body) != len(body) {
		t.Fatalf("upload answered with %s and %d body bytes, want /upload and %d", e.URI, len(e.Body), len(body))
	}
	st, got, _ = h.do(t, h.client(false), "GET", plainURL(port, "/other-client"), "", nil)
	if st != 200 || decodeEcho(t, got).URI != "/other-client" {
		t.Fatalf("second client got %d %.200s, want its own /other-client response", st, got)
	}

	t.Run("curl", func(t *testing.T) {
		curl, err := exec.LookPath("curl")
		if err != nil {
			testutil.SkipOrFail(t, "curl is not installed (make deps installs it)")
		}
		f := filepath.Join(t.TempDir(), "up")
		if err := os.WriteFile(f, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		// curl sends Expect: 100-continue for bodies over 1 MiB.
		out, err := exec.Command(curl, "-sS", "-x", h.proxyURL.String(), "--data-binary", "@"+f, plainURL(port, "/curl-upload")).CombinedOutput()
		if err != nil {
			t.Fatalf("curl upload: %v: %.300s", err, out)
		}
		if e := decodeEcho(t, string(out)); e.URI != "/curl-upload" || len(e.Body) != len(body) {
			t.Fatalf("curl upload answered with %s and %d bytes", e.URI, len(e.Body))
		}
		out, err = exec.Command(curl, "-sS", "-x", h.proxyURL.String(), plainURL(port, "/curl-next")).CombinedOutput()
		if err != nil || decodeEcho(t, string(out)).URI != "/curl-next" {
			t.Fatalf("curl after upload: %v: %.300s", err, out)
		}
	})
}

// TestEmptyPostNotReplayed: an upstream that reads a POST and drops the
// pooled connection without answering must see the POST once; the client
// gets a 502, not a silent retry.
func TestEmptyPostNotReplayed(t *testing.T) {
	t.Parallel()
	var posts atomic.Int32
	port := rawUpstream(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			if req.Method == "POST" {
				posts.Add(1)
				return // processed, then the connection drops
			}
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	h := newHarness(t, plainPolicy(port), nil)
	c := h.client(false)
	if st, body, _ := h.do(t, c, "GET", plainURL(port, "/warm"), "", nil); st != 200 {
		t.Fatalf("warm-up: %d %s", st, body)
	}
	st, body, _ := h.do(t, c, "POST", plainURL(port, "/charge"), "", nil)
	if n := posts.Load(); n != 1 {
		t.Fatalf("upstream saw the POST %d times, want 1", n)
	}
	if st != http.StatusBadGateway {
		t.Fatalf("status %d, want 502: %s", st, body)
	}
}

// countFDs counts this process's open descriptors.
func countFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestReloadKeepsUpstreamPool reloads the policy between requests: the
// upstream connection is reused, and descriptors do not grow per reload
// (the hand-written loop pooled per generation and never reaped).
// Not parallel: it counts this process's descriptors.
func TestReloadKeepsUpstreamPool(t *testing.T) {
	_, port := newPlainUpstream(t)
	h := newHarness(t, plainPolicy(port), nil)
	c := h.client(false)
	get := func() {
		t.Helper()
		if st, body, _ := h.do(t, c, "GET", plainURL(port, "/x"), "", nil); st != 200 {
			t.Fatalf("GET: %d %s", st, body)
		}
	}
	get()
	before := countFDs(t)
	const reloads = 30
	for range reloads {
		if err := h.p.Reload(plainPolicy(port)); err != nil {
			t.Fatal(err)
		}
		get()
	}
	if grown := countFDs(t) - before; grown >= reloads/3 {
		t.Fatalf("%d descriptors more after %d reloads: upstream connections leak per generation", grown, reloads)
	}
}

// TestResponseHeaderLimit: an upstream's oversized response head is
// refused with a 502 that says why.
func TestResponseHeaderLimit(t *testing.T) {
	t.Parallel()
	port := rawUpstream(t, func(c net.Conn) {
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n")
		line := "X-Big: " + strings.Repeat("b", 1000) + "\r\n"
		for range 200 { // 200 KB
			if _, err := io.WriteString(c, line); err != nil {
				return
			}
		}
		_, _ = io.WriteString(c, "\r\nok")
	})
	h := newHarness(t, plainPolicy(port), nil)
	st, body, _ := h.do(t, h.client(false), "GET", plainURL(port, "/big"), "", nil)
	if st != http.StatusBadGateway || !strings.Contains(body, "response headers over") {
		t.Fatalf("status %d body %.300s; want 502 naming the header limit", st, body)
	}
}

// TestRequestHeadLimits: a request head over the limit is refused with 431;
// heads not finished in time are closed; connections past the cap are
// closed at once.
func TestRequestHeadLimits(t *testing.T) {
	t.Parallel()
	_, port := newPlainUpstream(t)
	lim := defaultLimits
	lim.readHeaderTimeout = 300 * time.Millisecond
	h := newHarness(t, plainPolicy(port), func(c *Config) { c.limits = &lim })

	t.Run("40 KiB head", func(t *testing.T) {
		hdr := map[string]string{"X-Filler": strings.Repeat("a", 40<<10)}
		if st, body, _ := h.do(t, h.client(false), "GET", plainURL(port, "/"), "", hdr); st != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("status %d, want 431: %.200s", st, body)
		}
	})
	t.Run("slow heads", func(t *testing.T) {
		var conns []net.Conn
		for range 40 {
			c, err := net.Dial("tcp", h.proxyURL.Host)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			fmt.Fprintf(c, "GET %s HTTP/1.1\r\nX-Slow: ", plainURL(port, "/"))
			conns = append(conns, c)
		}
		for i, c := range conns {
			_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
			if _, err := io.Copy(io.Discard, c); err != nil && !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("connection %d with an unfinished head was not closed: %v", i, err)
			}
		}
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			h.p.mu.Lock()
			n := len(h.p.conns)
			h.p.mu.Unlock()
			if n == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d connections still tracked", n)
			}
		}
		waitAudit(t, h, "an unfinished request head", func(ev Event) bool {
			return ev.Decision == Deny && strings.Contains(ev.Reason, "request head")
		})
	})
}

// TestClientConnCap: past the cap of client connections, a new one is
// closed at once when none is idle.
func TestClientConnCap(t *testing.T) {
	t.Parallel()
	_, port := newPlainUpstream(t)
	lim := defaultLimits
	lim.maxConns = 20
	h := newHarness(t, plainPolicy(port), func(c *Config) { c.limits = &lim })
	var conns []net.Conn
	for range lim.maxConns {
		c, err := net.Dial("tcp", h.proxyURL.Host)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nX-Slow: ", plainURL(port, "/"))
		conns = append(conns, c)
	}
	// The server registers a connection when it accepts it; wait for all.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		h.p.mu.Lock()
		n := len(h.p.conns)
		h.p.mu.Unlock()
		if n == lim.maxConns {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d connections tracked, want %d", n, lim.maxConns)
		}
	}
	for i := range 5 {
		c, err := net.Dial("tcp", h.proxyURL.Host)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
		if n, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("connection %d over the cap: read %d bytes, %v; want it closed", i, n, err)
		}
	}
	h.p.mu.Lock()
	n := len(h.p.conns)
	h.p.mu.Unlock()
	if n > lim.maxConns {
		t.Fatalf("%d connections tracked, cap %d", n, lim.maxConns)
	}
}

// TestIdleClientConnCap: past the cap of idle client connections, the
// longest-idle ones are closed; the others keep working.
func TestIdleClientConnCap(t *testing.T) {
	t.Parallel()
	_, port := newPlainUpstream(t)
	lim := defaultLimits
	lim.maxIdleConns = 3
	h := newHarness(t, plainPolicy(port), func(c *Config) { c.limits = &lim })
	type kc struct {
		c  net.Conn
		br *bufio.Reader
	}
	get := func(k kc) error {
		if _, err := fmt.Fprintf(k.c, "GET %s HTTP/1.1\r\nHost: plain.test:%d\r\n\r\n", plainURL(port, "/"), port); err != nil {
			return err
		}
		resp, err := http.ReadResponse(k.br, nil)
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return err
	}
	var ks []kc
	for i := range 6 {
		c, err := net.Dial("tcp", h.proxyURL.Host)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		k := kc{c, bufio.NewReader(c)}
		if err := get(k); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		ks = append(ks, k)
		// The server marks a connection idle after the response is out;
		// wait for it so that the idle order is the order of the requests.
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			idle := true
			h.p.mu.Lock()
			for sc, cc := range h.p.conns {
				if sc.RemoteAddr().String() == c.LocalAddr().String() {
					idle = !cc.idleSince.IsZero()
				}
			}
			h.p.mu.Unlock()
			if idle {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("connection %d never became idle", i)
			}
		}
	}
	for i, k := range ks[:3] {
		_ = k.c.SetReadDeadline(time.Now().Add(20 * time.Second))
		if n, err := k.br.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("idle connection %d over the cap: read %d bytes, %v; want it closed", i, n, err)
		}
	}
	for i, k := range ks[3:] {
		if err := get(k); err != nil {
			t.Fatalf("connection %d within the cap: %v", i+3, err)
		}
	}
}

// identityHandler reports the identity headers and trailers the upstream
// received, and sends a trailer of its own.
func identityHandler(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	w.Header().Set("Trailer", "X-Up-Trailer")
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{
		"xff": r.Header.Get("X-Forwarded-For"), "fwd": r.Header.Get("Forwarded"),
		"xfh": r.Header.Get("X-Forwarded-Host"), "trailer": r.Trailer.Get("X-Client-Trailer"),
	})
	w.Header().Set("X-Up-Trailer", "from-upstream")
}

// TestIdentityHeadersAndTrailers: X-Forwarded-For/Forwarded are stripped
// and trailers dropped both ways, on HTTP/1.1 and h2 alike.
func TestIdentityHeadersAndTrailers(t *testing.T) {
	t.Parallel()
	plain := httptest.NewServer(http.HandlerFunc(identityHandler))
	t.Cleanup(plain.Close)
	pport := plain.Listener.Addr().(*net.TCPAddr).Port
	tlsSrv := httptest.NewUnstartedServer(http.HandlerFunc(identityHandler))
	tlsSrv.EnableHTTP2 = true
	tlsSrv.TLS = &tls.Config{Certificates: []tls.Certificate{upstreamPKI(t).cert}}
	tlsSrv.StartTLS()
	t.Cleanup(tlsSrv.Close)
	tport := tlsSrv.Listener.Addr().(*net.TCPAddr).Port
	h := newHarness(t, pol(map[string][]*policy.Endpoint{
		"plain": {ep("plain.test", pport, loopOK)},
		"api":   {ep("api.test", tport, loopOK, rest, allow("POST", "/**"))},
	}), nil)
	for _, tc := range []struct {
		name string
		h2   bool
		url  string
	}{
		{"http/1.1 absolute-form", false, plainURL(pport, "/id")},
		{"http/1.1 intercepted", false, u("api.test", tport, "/id")},
		{"h2 intercepted", true, u("api.test", tport, "/id")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest("POST", tc.url, io.MultiReader(strings.NewReader("body")))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("X-Forwarded-For", "10.9.9.9")
			req.Header.Set("Forwarded", "for=10.9.9.9")
			req.Header.Set("X-Forwarded-Host", "internal.example")
			req.Trailer = http.Header{"X-Client-Trailer": {"from-client"}}
			resp, err := h.client(tc.h2).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var got map[string]string
			if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
				t.Fatalf("status %d: %v", resp.StatusCode, err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			for k, v := range got {
				if v != "" {
					t.Errorf("upstream received %s = %q; want it stripped", k, v)
				}
			}
			if v := resp.Trailer.Get("X-Up-Trailer"); v != "" {
				t.Errorf("client received the upstream's trailer %q; want it dropped", v)
			}
		})
	}
}

// TestAuditRefusals: requests refused before a decision (malformed, not a
// proxy request, an h2 stream error) and allowed CONNECTs whose upstream
// fails each leave an audit line.
func TestAuditRefusals(t *testing.T) {
	t.Parallel()
	_, tport := newTLSUpstream(t)
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadPort := dead.Addr().(*net.TCPAddr).Port
	dead.Close()
	h := newHarness(t, pol(map[string][]*policy.Endpoint{
		"api":  {ep("api.test", tport, loopOK, rest, allow("GET", "/**"))},
		"dead": {ep("tg.test", deadPort, loopOK)},
	}), nil)
	raw := func(t *testing.T, s string) string {
		c, err := net.Dial("tcp", h.proxyURL.Host)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		_, _ = io.WriteString(c, s)
		b, _ := io.ReadAll(c)
		return string(b)
	}
	t.Run("malformed", func(t *testing.T) {
		if out := raw(t, "NOT HTTP AT ALL\r\n\r\n"); !strings.HasPrefix(out, "HTTP/1.1 400") {
			t.Fatalf("answer %q, want 400", out)
		}
		waitAudit(t, h, "a malformed request", func(ev Event) bool {
			return ev.Decision == Deny && strings.Contains(ev.Reason, "malformed")
		})
	})
	t.Run("origin-form", func(t *testing.T) {
		if out := raw(t, "GET /x HTTP/1.1\r\nHost: a\r\n\r\n"); !strings.HasPrefix(out, "HTTP/1.1 400") {
			t.Fatalf("answer %q, want 400", out)
		}
		waitAudit(t, h, "an origin-form request", func(ev Event) bool {
			return ev.Status == 400 && strings.Contains(ev.Reason, "not origin requests")
		})
	})
	t.Run("connect upstream down", func(t *testing.T) {
		out := raw(t, fmt.Sprintf("CONNECT tg.test:%d HTTP/1.1\r\nHost: tg.test:%d\r\n\r\n", deadPort, deadPort))
		if !strings.HasPrefix(out, "HTTP/1.1 502") {
			t.Fatalf("answer %q, want 502", out)
		}
		waitAudit(t, h, "a CONNECT whose upstream is down", func(ev Event) bool {
			return ev.Activity == "connect" && ev.Host == "tg.test" && ev.Status == http.StatusBadGateway
		})
	})
	t.Run("h2 stream error", func(t *testing.T) {
		c, err := net.Dial("tcp", h.proxyURL.Host)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "CONNECT api.test:%d HTTP/1.1\r\nHost: api.test:%d\r\n\r\n", tport, tport)
		br := bufio.NewReader(c)
		if resp, err := http.ReadResponse(br, &http.Request{Method: "CONNECT"}); err != nil || resp.StatusCode != 200 {
			t.Fatalf("CONNECT: %v %v", resp, err)
		}
		tc := tls.Client(&peekConn{Conn: c, r: br}, &tls.Config{RootCAs: h.caPool, ServerName: "api.test", NextProtos: []string{"h2"}})
		if err := tc.Handshake(); err != nil || tc.ConnectionState().NegotiatedProtocol != "h2" {
			t.Fatalf("h2 handshake: %v", err)
		}
		_, _ = io.WriteString(tc, http2.ClientPreface)
		fr := http2.NewFramer(tc, tc)
		_ = fr.WriteSettings()
		var hb bytes.Buffer
		enc := hpack.NewEncoder(&hb)
		for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "api.test"}} { // no :path
			_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
			t.Fatal(err)
		}
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				t.Fatalf("no reset for a request without :path: %v", err)
			}
			if _, ok := f.(*http2.RSTStreamFrame); ok {
				break
			}
		}
		waitAudit(t, h, "an h2 stream reset", func(ev Event) bool {
			return ev.Host == "api.test" && strings.Contains(ev.Reason, "h2 stream")
		})
	})
}

// TestAbsoluteFormWebSocketUntracked: a WebSocket upgrade over an
// absolute-form request leaves the proxy's connection table when it ends.
func TestAbsoluteFormWebSocketUntracked(t *testing.T) {
	t.Parallel()
	_, port := newPlainUpstream(t)
	h := newHarness(t, pol(map[string][]*policy.Endpoint{"ws": {ep("ws.test", port, loopOK)}}), nil)
	c, err := net.Dial("tcp", h.proxyURL.Host)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET http://ws.test:%d/ws HTTP/1.1\r\nHost: ws.test:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", port, port)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	c.Close()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		h.p.mu.Lock()
		n := len(h.p.conns)
		h.p.mu.Unlock()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d connections still tracked after the WebSocket closed", n)
		}
	}
}
