package egress

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/nemoclaw/nemoclaw/runner/policy"
)

// TestInterceptedL7 drives real HTTPS requests through CONNECT + interception
// and checks every L7 decision against what the upstream actually received.
func TestInterceptedL7(t *testing.T) {
	t.Parallel()
	_, port := newTLSUpstream(t)
	h := newHarness(t, pol(map[string][]*policy.Endpoint{
		"api": {ep("api.test", port, loopOK, rest,
			allow("GET", "/public/**"), allow("GET", "/v1/*/items"), allow("POST", "/v1/upload"),
			denyRule("*", "/public/secret/**"))},
		"ro": {ep("other.test", port, loopOK, rest, func(e *policy.Endpoint) { e.Access = policy.AccessReadOnly })},
	}), nil)
	c := h.client(false)
	cases := []struct {
		name, method, url string
		want              int
		upstreamURI       string
	}{
		{"allowed get", "GET", u("api.test", port, "/public/a/b"), 200, "/public/a/b"},
		{"query passes through", "GET", u("api.test", port, "/public/a?x=1&y=2"), 200, "/public/a?x=1&y=2"},
		{"single-segment glob", "GET", u("api.test", port, "/v1/abc/items"), 200, "/v1/abc/items"},
		{"glob does not span segments", "GET", u("api.test", port, "/v1/a/b/items"), 403, ""},
		{"method not allowed", "DELETE", u("api.test", port, "/public/a"), 403, ""},
		{"post allowed", "POST", u("api.test", port, "/v1/upload"), 200, "/v1/upload"},
		{"deny rule beats allow", "GET", u("api.test", port, "/public/secret/x"), 403, ""},
		{"dot segments resolved then denied", "GET", u("api.test", port, "/public/../admin"), 403, ""},
		{"dot segments resolved then allowed", "GET", u("api.test", port, "/public/x/../y"), 200, "/public/y"},
		{"encoded dots", "GET", u("api.test", port, "/public/%2e%2e/admin"), 403, ""},
		{"params trick", "GET", u("api.test", port, "/public/..;/admin"), 403, ""},
		{"double slash collapsed", "GET", u("api.test", port, "//public//a"), 200, "/public/a"},
		{"double encoding refused", "GET", u("api.test", port, "/public/%252e%252e/admin"), 403, ""},
		{"encoded slash refused", "GET", u("api.test", port, "/public%2F..%2Fadmin"), 403, ""},
		{"deny rule via dot segments", "GET", u("api.test", port, "/public/x/../secret/k"), 403, ""},
		{"deny rule via encoding", "GET", u("api.test", port, "/public/%73ecret/k"), 403, ""},
		{"read-only get", "GET", u("other.test", port, "/anything"), 200, "/anything"},
		{"read-only head", "HEAD", u("other.test", port, "/anything"), 200, ""},
		{"read-only denies post", "POST", u("other.test", port, "/anything"), 403, ""},
		{"read-only denies put", "PUT", u("other.test", port, "/anything"), 403, ""},
		{"unknown host", "GET", u("loop.test", port, "/"), 403, ""},
		{"wrong port", "GET", u("api.test", port+1, "/public/a"), 403, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st, body, _ := h.do(t, c, tc.method, tc.url, "", nil)
			if st != tc.want {
				t.Fatalf("status %d, want %d; body %s", st, tc.want, body)
			}
			if tc.upstreamURI != "" {
				if e := decodeEcho(t, body); e.URI != tc.upstreamURI || e.Method != tc.method {
					t.Fatalf("upstream saw %s %s, want %s %s", e.Method, e.URI, tc.method, tc.upstreamURI)
				}
			}
			if st == 403 && strings.HasPrefix(body, "{") {
				d := decodeDenial(t, body)
				if d.Error == "" || d.Detail == "" || d.Host == "" || d.Port == 0 || d.Method != tc.method || d.RuleMissing == "" || d.NextSteps == "" {
					t.Fatalf("incomplete denial body: %+v", d)
				}
			}
		})
	}
}

// TestKeepAliveEachRequestEvaluated sends allowed and denied requests on one
// kept-alive intercepted connection.
func TestKeepAliveEachRequestEvaluated(t *testing.T) {
	t.Parallel()
	_, port := newTLSUpstream(t)
	h := newHarness(t, pol(map[string][]*policy.Endpoint{
		"api": {ep("api.test", port, loopOK, rest, allow("GET", "/ok/**"))},
	}), nil)
	c := h.client(false)
	var conns atomic.Int32
	tr := c.Transport.(*http.Transport)
	tr.DialContext = func(ctx contextT, network, addr string) (net.Conn, error) {
		conns.Add(1)
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	for i, tc := range []struct {
		path string
		want int
	}{{"/ok/1", 200}, {"/ok/2", 200}, {"/nope", 403}, {"/ok/3", 200}} {
		st, body, _ := h.do(t, c, "GET", u("api.test", port, tc.path), "", nil)
		if st != tc.want {
			t.Fatalf("request %d %s: status %d want %d: %s", i, tc.path, st, tc.want, body)
		}
	}
	// The 403 closes its connection; the others share one.
	if n := conns.Load(); n > 2 {
		t.Fatalf("expected kept-alive connections, got %d dials", n)
	}
}

// TestH2ThroughInterception checks that a client offering h2 gets h2 from
// the proxy and that the upstream is reached (over h2 as well).
func TestH2ThroughInterception(t *testing.T) {
	t.Parallel()
	_, port := newTLSUpstream(t)
	h := newHarness(t, pol(map[string][]*policy.Endpoint{
		"api": {ep("api.test", port, loopOK, rest, allow("GET", "/**"), denyRule("*", "/admin/**"))},
	}), nil)
	c := h.client(true)
	st, body, resp := h.do(t, c, "GET", u("api.test", port, "/h2"), "", nil)
	if st != 200 || resp.ProtoMajor != 2 {
		t.Fatalf("status %d proto %v: %s", st, resp.Proto, body)
	}
	if e := decodeEcho(t, body); e.Proto != "HTTP/2.0" || e.URI != "/h2" {
		t.Fatalf("upstream saw %+v", e)
	}
	st, body, resp = h.do(t, c, "GET", u("api.test", port, "/admin/x"), "", nil)
	if st != 403 || resp.ProtoMajor != 2 {
		t.Fatalf("h2 deny: status %d proto %s: %s", st, resp.Proto, body)
	}
	decodeDenial(t, body)
}

// TestPlainHTTPForward covers absolute-form proxying of plain HTTP.
func TestPlainHTTPForward(t *testing.T) {
	t.Parallel()
	_, port := newPlainUpstream(t)
	h := newHarness(t, pol(map[string][]*policy.Endpoint{
		"plain": {ep("plain.test", port, loopOK, func(e *policy.Endpoint) { e.Protocol = "rest"; e.Access = policy.AccessReadOnly })},
	}), nil)
	c := h.client(false)
	base := "http://plain.test:" + strconv.Itoa(port)
	if st, body, _ := h.do(t, c, "GET", base+"/x?q=1", "", nil); st != 200 || decodeEcho(t, body).URI != "/x?q=1" {
		t.Fatalf("GET: %d %s", st, body)
	}
	st, body, _ := h.do(t, c, "POST", base+"/x", "data", nil)
	if st != 403 {
		t.Fatalf("POST on read-only: %d %s", st, body)
	}
	if d := decodeDenial(t, body); d.Method != "POST" || d.Path != "/x" || d.Host != "plain.test" {
		t.Fatalf("denial: %+v", d)
	}
	// An origin-form request to the proxy itself is not a proxy request.
	resp, err := http.Get(h.proxyURL.String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Fatalf("origin-form request: %d", resp.StatusCode)
	}
}

// TestSSRF tries the ways to reach loopback, private and metadata addresses.
func TestSSRF(t *testing.T) {
	t.Parallel()
	_, port := newTLSUpstream(t)
	h := newHarness(t, pol(map[string][]*policy.Endpoint{
		"named":   {ep("loop.test", port, rest, allow("*", "/**"))}, // resolves to loopback, not named
		"corp":    {ep("*.corp.test", port)},                        // glob resolving to private
		"meta":    {ep("meta.test", 80), ep("mixed.test", port, loopOK)},
		"tcp":     {ep("other.test", port, func(e *policy.Endpoint) { e.Protocol = "tcp" })}, // L4, loopback not named
		"literal": {ep("127.0.0.1", port, allow("GET", "/**"))},
	}), nil)
	c := h.client(false)
	cases := []struct {
		name, url string
		want      int
	}{
		{"loopback literal not in policy (other port)", u("127.0.0.1", port+1, "/"), 403},
		{"ipv6 loopback", u("::1", port, "/"), 403},
		{"metadata ip", u("169.254.169.254", 80, "/latest/meta-data/"), 403},
		{"metadata name", u("metadata.google.internal", 80, "/"), 403},
		{"decimal ip", u("2130706433", port, "/"), 403},
		{"octal ip", u("0177.0.0.1", port, "/"), 403},
		{"hex ip", u("0x7f000001", port, "/"), 403},
		{"short ip", u("127.1", port, "/"), 403},
		{"name resolving to loopback", u("loop.test", port, "/"), 403},
		{"glob resolving to private", u("a.corp.test", port, "/"), 403},
		{"name resolving to metadata", u("meta.test", 80, "/"), 403},
		{"tcp tunnel to loopback name", u("other.test", port, "/"), 403},
		{"mixed answers keep only allowed", u("mixed.test", port, "/x"), 200},
		{"loopback named explicitly", u("127.0.0.1", port, "/y"), 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st, body, _ := h.do(t, c, "GET", tc.url, "", nil)
			if st != tc.want {
				t.Fatalf("status %d want %d: %s", st, tc.want, body)
			}
		})
	}
	// absolute-form plain HTTP to the metadata IP and a decimal loopback.
	for _, target := range []string{"http://169.254.169.254/latest/", "http://2130706433:" + strconv.Itoa(port) + "/", "http://[::1]:" + strconv.Itoa(port) + "/"} {
		st, body, _ := h.do(t, c, "GET", target, "", nil)
		if st != 403 {
			t.Fatalf("%s: status %d: %s", target, st, body)
		}
	}
}

// TestPolicyValidation checks that bad endpoints are refused with the field.
func TestPolicyValidation(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		e    *policy.Endpoint
		want string
	}{
		{"metadata ip", ep("169.254.169.254", 80), "never reachable"},
		{"metadata name", ep("metadata.google.internal", 80), "metadata"},
		{"decimal host", ep("2130706433", 80), "non-canonical"},
		{"bad port", ep("a.test", 70000), "port"},
		{"access and rules", ep("a.test", 443, allow("GET", "/"), func(e *policy.Endpoint) { e.Access = "full" }), "exclusive"},
		{"bad access", ep("a.test", 443, func(e *policy.Endpoint) { e.Access = "most" }), "access"},
		{"bad protocol", ep("a.test", 443, func(e *policy.Endpoint) { e.Protocol = "ftp" }), "protocol"},
		{"tcp with rules", ep("a.test", 443, allow("GET", "/"), func(e *policy.Endpoint) { e.Protocol = "tcp" }), "tcp"},
		{"bare star", ep("*", 443), "every host"},
		{"bad glob", ep("a.test", 443, allow("GET", "/[")), "glob"},
		{"relative path", ep("a.test", 443, allow("GET", "v1")), "pattern '^/'"},
		{"link-local allowed_ips", ep("a.test", 443, func(e *policy.Endpoint) { e.AllowedIPs = []string{"169.254.0.0/16"} }), "never reachable"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(Config{Policy: pol(map[string][]*policy.Endpoint{"g": {tc.e}})})
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "network_policies.g.endpoints[0]") {
				t.Fatalf("err = %v, want mention of %q and the endpoint", err, tc.want)
			}
		})
	}
}

// TestWebSocket upgrades through an intercepted tunnel and echoes frames;
// a rest endpoint refuses the upgrade.
func TestWebSocket(t *testing.T) {
	t.Parallel()
	_, port := newTLSUpstream(t)
	h := newHarness(t, pol(map[string][]*policy.Endpoint{
		"ws": {ep("ws.test", port, loopOK, func(e *policy.Endpoint) {
			e.Protocol = "websocket"
			e.Rules = []*policy.Rule{{Allow: &policy.Matcher{Method: "GET", Path: "/ws"}}}
		})},
		"rest": {ep("api.test", port, loopOK, rest, allow("GET", "/**"))},
	}), nil)
	d := websocket.Dialer{Proxy: http.ProxyURL(h.proxyURL), TLSClientConfig: tlsConfig(h.caPool), HandshakeTimeout: 10 * time.Second}
	c, _, err := d.Dial("wss://ws.test:"+strconv.Itoa(port)+"/ws", nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	for i := range 3 {
		msg := fmt.Sprintf("hello %d", i)
		if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		_, m, err := c.ReadMessage()
		if err != nil || string(m) != "echo:"+msg {
			t.Fatalf("read %q, %v", m, err)
		}
	}
	c.Close()
	_, resp, err := d.Dial("wss://api.test:"+strconv.Itoa(port)+"/ws", nil)
	if err == nil || resp == nil || resp.StatusCode != 403 {
		t.Fatalf("upgrade to rest endpoint: err %v resp %v", err, resp)
	}
}

// TestBinaries scopes a group to executables; the test binary itself is
// the client, so the peer lookup must find it.
func TestBinaries(t *testing.T) {
	t.Parallel()
	_, port := newTLSUpstream(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p := pol(map[string][]*policy.Endpoint{
		"mine":  {ep("api.test", port, loopOK, rest, allow("GET", "/**"))},
		"other": {ep("other.test", port, loopOK, rest, allow("GET", "/**"))},
	})
	p.NetworkPolicies["mine"].Binaries = []*policy.Binary{{Path: self}}
	p.NetworkPolicies["other"].Binaries = []*policy.Binary{{Path: "/usr/bin/definitely-not-this"}}
	h := newHarness(t, p, nil)
	c := h.client(false)
	if st, body, _ := h.do(t, c, "GET", u("api.test", port, "/"), "", nil); st != 200 {
		t.Fatalf("own binary: %d %s", st, body)
	}
	st, body, _ := h.do(t, c, "GET", u("other.test", port, "/"), "", nil)
	if st != 403 {
		t.Fatalf("other binary: %d %s", st, body)
	}
	h.p.FlushAudit()
	if !strings.Contains(h.audit.String(), `"binary":"`+self+`"`) {
		t.Fatalf("audit does not name the binary %s:\n%s", self, h.audit.String())
	}
}

// TestAuditModeAndLog checks enforcement: audit and the audit log content.
func TestAuditModeAndLog(t *testing.T) {
	t.Parallel()
	_, port := newTLSUpstream(t)
	h := newHarness(t, pol(map[string][]*policy.Endpoint{
		"audited": {ep("audited.test", port, loopOK, rest, allow("GET", "/only"), func(e *policy.Endpoint) { e.Enforcement = policy.Audit })},
		"api":     {ep("api.test", port, loopOK, rest, allow("GET", "/only"))},
	}), nil)
	c := h.client(false)
	if st, body, _ := h.do(t, c, "POST", u("audited.test", port, "/else?token=s3cr3t-query"), "body-s3cr3t", map[string]string{"Authorization": "Bearer hdr-s3cr3t"}); st != 200 {
		t.Fatalf("audit-mode endpoint should let it through: %d %s", st, body)
	}
	if st, _, _ := h.do(t, c, "POST", u("api.test", port, "/else?token=s3cr3t-query"), "", nil); st != 403 {
		t.Fatalf("enforce endpoint: %d", st)
	}
	for range 3 {
		h.do(t, c, "GET", u("api.test", port, "/only"), "", nil)
	}
	h.p.FlushAudit()
	log := h.audit.String()
	if strings.Contains(log, "s3cr3t") {
		t.Fatalf("audit log leaks a query string, header or body:\n%s", log)
	}
	var sawAudit, sawDeny, sawAllow bool
	for _, line := range strings.Split(strings.TrimSpace(log), "\n") {
		ev := Event{}
		if err := jsonUnmarshal(line, &ev); err != nil {
			t.Fatalf("audit line is not JSON: %q", line)
		}
		switch {
		case ev.Decision == AuditDeny && ev.Host == "audited.test" && ev.Path == "/else":
			sawAudit = true
		case ev.Decision == Deny && ev.Host == "api.test" && ev.Method == "POST":
			sawDeny = true
		case ev.Decision == Allow && ev.Path == "/only":
			sawAllow = true
		}
	}
	if !sawAudit || !sawDeny || !sawAllow {
		t.Fatalf("audit=%v deny=%v allow=%v in:\n%s", sawAudit, sawDeny, sawAllow, log)
	}
	var allowCount int64
	for _, s := range h.p.Summaries() {
		if s.Host == "api.test" && s.Decision == Allow {
			allowCount = s.Count
		}
	}
	// Two tunnel opens (the 403 closed the first) plus three allowed requests.
	if allowCount != 5 {
		t.Fatalf("summary count for allowed api.test = %d, want 5: %+v", allowCount, h.p.Summaries())
	}
}

// TestHostHeaderMismatch refuses a request whose Host differs from the
// tunnel it travels in.
func TestHostHeaderMismatch(t *testing.T) {
	t.Parallel()
	_, port := newPlainUpstream(t)
	h := newHarness(t, pol(map[string][]*policy.Endpoint{
		"plain": {ep("plain.test", port, loopOK, func(e *policy.Endpoint) { e.Access = "full" })},
	}), nil)
	conn, err := net.Dial("tcp", h.proxyURL.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hp := "plain.test:" + strconv.Itoa(port)
	fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", hp, hp)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", hp)
	if resp, err = http.ReadResponse(br, nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("plain request in tunnel: %v %v", resp, err)
	}
	resp.Body.Close()
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: evil.test\r\n\r\n")
	if resp, err = http.ReadResponse(br, nil); err != nil || resp.StatusCode != 403 {
		t.Fatalf("mismatched Host: %v %v", resp, err)
	}
}

// TestReloadUnderLoad swaps policy generations while clients hammer an
// allowed endpoint: no allowed request may fail, and the new generation
// takes effect.
func TestReloadUnderLoad(t *testing.T) {
	t.Parallel()
	_, port := newTLSUpstream(t)
	base := func(extra bool) *policy.Policy {
		g := map[string][]*policy.Endpoint{"api": {ep("api.test", port, loopOK, rest, allow("GET", "/**"))}}
		if extra {
			g["other"] = []*policy.Endpoint{ep("other.test", port, loopOK, rest, allow("GET", "/**"))}
		}
		return pol(g)
	}
	h := newHarness(t, base(false), nil)
	var (
		wg       sync.WaitGroup
		stop     atomic.Bool
		ok, fail atomic.Int64
	)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := h.client(false)
			for !stop.Load() {
				resp, err := c.Get(u("api.test", port, "/load"))
				if err != nil {
					fail.Add(1)
					continue
				}
				resp.Body.Close()
				if resp.StatusCode == 200 {
					ok.Add(1)
				} else {
					fail.Add(1)
				}
			}
		}()
	}
	for i := range 40 {
		if err := h.p.Reload(base(i%2 == 0)); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()
	if fail.Load() != 0 || ok.Load() == 0 {
		t.Fatalf("during reloads: %d ok, %d failed", ok.Load(), fail.Load())
	}
	if g := h.p.Generation(); g != 41 {
		t.Fatalf("generation %d, want 41", g)
	}
	// Final generation (i=39 → no extra) refuses other.test; an invalid one is rejected and changes nothing.
	c := h.client(false)
	if st, _, _ := h.do(t, c, "GET", u("other.test", port, "/"), "", nil); st != 403 {
		t.Fatalf("other.test after reload: %d", st)
	}
	bad := base(true)
	bad.NetworkPolicies["other"].Endpoints[0].Access = "bogus"
	if err := h.p.Reload(bad); err == nil || !strings.Contains(err.Error(), "stays in force") {
		t.Fatalf("invalid reload: %v", err)
	}
	if h.p.Generation() != 41 {
		t.Fatal("invalid reload changed the generation")
	}
	static := base(true)
	static.Filesystem = &policy.FilesystemPolicy{ReadWrite: []string{"/"}}
	if err := h.p.Reload(static); err == nil || !strings.Contains(err.Error(), "filesystem_policy") {
		t.Fatalf("static change: %v", err)
	}
	// A preset adds a group live.
	if err := h.p.AddPreset(&policy.Preset{Meta: policy.PresetMeta{Name: "other"}, NetworkPolicies: base(true).NetworkPolicies}); err != nil {
		t.Fatal(err)
	}
	if st, body, _ := h.do(t, c, "GET", u("other.test", port, "/"), "", nil); st != 200 {
		t.Fatalf("after preset: %d %s", st, body)
	}
}

// TestHeaderLimit sends an endless request head: the proxy must answer 431
// and close instead of buffering it.
func TestHeaderLimit(t *testing.T) {
	t.Parallel()
	h := newHarness(t, pol(map[string][]*policy.Endpoint{}), nil)
	conn, err := net.Dial("tcp", h.proxyURL.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	go func() {
		_, _ = conn.Write([]byte("GET http://plain.test/ HTTP/1.1\r\nHost: plain.test\r\n"))
		line := []byte("X-Filler: " + strings.Repeat("a", 4000) + "\r\n")
		for range 400 { // 1.6 MB of headers
			if _, err := conn.Write(line); err != nil {
				return
			}
		}
	}()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil || resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("oversized head: %v %v", resp, err)
	}
}

// TestInterceptionWithStartedCA runs the proxy on a CA still being made
// (StartCA, as `sandbox run` does): New does not wait for it, and the
// first interception and CACertPEM do.
func TestInterceptionWithStartedCA(t *testing.T) {
	t.Parallel()
	_, port := newTLSUpstream(t)
	ca := StartCA("started")
	h := newHarness(t, pol(map[string][]*policy.Endpoint{
		"api": {ep("api.test", port, loopOK, rest, allow("GET", "/public/**"))},
	}), func(c *Config) { c.CA = ca })
	got, err := h.p.CACertPEM()
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := ca.CertPEM(); !bytes.Equal(got, want) {
		t.Fatal("the proxy serves a CA other than the one it was given")
	}
	st, body, _ := h.do(t, h.client(false), "GET", u("api.test", port, "/public/x"), "", nil)
	if st != 200 {
		t.Fatalf("status %d through a started CA; body %s", st, body)
	}
}

// TestFinish checks that Finish writes the audit summaries and refuses
// new connections while leaving the listener open, and that a Close after
// it closes the listener.
func TestFinish(t *testing.T) {
	t.Parallel()
	_, port := newPlainUpstream(t)
	h := newHarness(t, pol(map[string][]*policy.Endpoint{
		"api": {ep("api.test", port, loopOK, func(e *policy.Endpoint) { e.Protocol = "rest"; e.Access = policy.AccessReadOnly })},
	}), nil)
	c := h.client(false)
	if st, body, _ := h.do(t, c, "GET", "http://api.test:"+strconv.Itoa(port)+"/x", "", nil); st != 200 {
		t.Fatalf("allowed request before Finish: %d %s", st, body)
	}
	c.CloseIdleConnections()
	if err := h.p.Finish(); err != nil {
		t.Fatal(err)
	}
	var summary bool
	for _, line := range strings.Split(strings.TrimSpace(h.audit.String()), "\n") {
		ev := Event{}
		if err := jsonUnmarshal(line, &ev); err != nil {
			t.Fatalf("audit line is not JSON: %q", line)
		}
		summary = summary || ev.Activity == "summary" && ev.Host == "api.test" && ev.Count == 1
	}
	if !summary {
		t.Fatalf("no summary for api.test after Finish:\n%s", h.audit.String())
	}
	// The listener is open (the kernel completes the handshake), but the
	// proxy closes what it accepts without serving it.
	conn, err := net.Dial("tcp", h.proxyURL.Host)
	if err != nil {
		t.Fatalf("listener closed by Finish: %v", err)
	}
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET http://api.test:%d/x HTTP/1.1\r\nHost: api.test:%d\r\n\r\n", port, port)
	// Closed with the request unread: EOF or a reset.
	if n, err := conn.Read(make([]byte, 1)); n != 0 || err != io.EOF && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("connection after Finish: read %d bytes, %v; want it closed unanswered", n, err)
	}
	conn.Close()
	if err := h.p.Close(); err != nil {
		t.Fatal(err)
	}
	if conn, err := net.Dial("tcp", h.proxyURL.Host); err == nil {
		conn.Close()
		t.Fatal("listener still open after Close")
	}
}
