package egress

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/time/rate"

	"github.com/nemoclaw/nemoclaw/internal/testutil"
	"github.com/nemoclaw/nemoclaw/runner/policy"
)

// countingResolver records every name the proxy asks the host to resolve.
type countingResolver struct {
	mu    sync.Mutex
	names []string
}

func (c *countingResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	c.mu.Lock()
	c.names = append(c.names, host)
	c.mu.Unlock()
	return testResolver.LookupNetIP(ctx, network, host)
}

func (c *countingResolver) asked() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.names...)
}

func creds(cs ...*policy.Credential) func(*policy.Endpoint) {
	return func(e *policy.Endpoint) { e.Credentials = append(e.Credentials, cs...) }
}

func queryRule(deny bool, method, path string, q map[string]string) func(*policy.Endpoint) {
	return func(e *policy.Endpoint) {
		m := &policy.Matcher{Method: method, Path: path, Query: map[string]*policy.QueryMatcher{}}
		for k, v := range q {
			m.Query[k] = &policy.QueryMatcher{Glob: v}
		}
		if deny {
			e.DenyRules = append(e.DenyRules, m)
		} else {
			e.Rules = append(e.Rules, &policy.Rule{Allow: m})
		}
	}
}

func lookupEnv(env map[string]string) func(*Config) {
	return func(c *Config) {
		c.LookupEnv = func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	}
}

func placeholderOf(t *testing.T, h *harness, name string) string {
	t.Helper()
	for _, kv := range h.p.Env("http://127.0.0.1:3128", "/b", "/c") {
		if v, ok := strings.CutPrefix(kv, name+"="); ok {
			return v
		}
	}
	t.Fatalf("no placeholder for %s", name)
	return ""
}

// TestCredentialNeverInDenial (issue 13 item 11): a path credential on an
// endpoint whose name resolves only to refused addresses (exact name to
// 169.254.169.254, a wildcard's name to 10.x) must not come back in the 403
// body or the audit log. Before the fix the h1 path built the denial from
// the substituted path.
func TestCredentialNeverInDenial(t *testing.T) {
	t.Parallel()
	const secret = "s3cr3t-tok/xyz"
	cred := &policy.Credential{Name: "TOK", Env: "HOST_TOK", In: []string{"path"}}
	h := newHarness(t, pol(map[string][]*policy.Endpoint{
		"meta": {ep("meta.test", 443, rest, allow("*", "/**"), creds(cred))},
		"corp": {ep("*.corp.test", 443, rest, allow("*", "/**"), creds(cred))},
	}), lookupEnv(map[string]string{"HOST_TOK": secret}))
	ph := placeholderOf(t, h, "TOK")
	for _, h2 := range []bool{false, true} {
		for _, host := range []string{"meta.test", "a.corp.test"} {
			st, body, _ := h.do(t, h.client(h2), "GET", u(host, 443, "/bot"+ph+"/getMe"), "", nil)
			if st != 403 || strings.Contains(body, "s3cr3t") {
				t.Fatalf("h2=%v %s: %d %s", h2, host, st, body)
			}
			if d := decodeDenial(t, body); !strings.Contains(d.Path, ph) {
				t.Fatalf("h2=%v %s: denial path %q should name the placeholder the agent sent", h2, host, d.Path)
			}
		}
	}
	h.p.FlushAudit()
	if strings.Contains(h.audit.String(), "s3cr3t") {
		t.Fatalf("secret in the audit log:\n%s", h.audit.String())
	}
}

// reflectingUpstream echoes the request's credentials back in response
// headers, as CORS handlers and redirects do.
func reflectingUpstream(t *testing.T) int {
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", "https://tg.test/next?auth="+url.QueryEscape(r.Header.Get("Authorization"))+"&p="+r.URL.EscapedPath())
		w.Header().Set("Access-Control-Allow-Origin", r.Header.Get("Authorization"))
		w.Header().Set("X-Key", r.Header.Get("X-Api-Key"))
		w.Header().Set("X-Path", r.URL.Path)
		w.Header().Set("X-Query-Secret", fmt.Sprint(r.URL.Query().Get("token") == "query-secret"))
		if strings.HasSuffix(r.URL.Path, "/err") {
			// An error page quoting the request, as many APIs send.
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprintf(w, "bad token in %s (%s)\n", r.URL.EscapedPath(), r.Header.Get("Authorization"))
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	s.EnableHTTP2 = true
	s.TLS = &tls.Config{Certificates: []tls.Certificate{upstreamPKI(t).cert}}
	s.StartTLS()
	t.Cleanup(s.Close)
	return s.Listener.Addr().(*net.TCPAddr).Port
}

// TestCredentialDeclaredPlace (issue 13 item 12): a header credential is
// substituted only in its declared header, a path credential only in its
// declared segment; a placeholder anywhere else is refused; a secret that
// an upstream reflects in a response header reaches the agent as the
// placeholder, and so does one quoted in a small error page. Before the
// fix any header and any path position took the secret, and responses
// were not scrubbed.
func TestCredentialDeclaredPlace(t *testing.T) {
	t.Parallel()
	port := reflectingUpstream(t)
	const hdrSecret, keySecret, pathSecret = "hdr-secret+1/2", "key-secret-9", "123:ABC_tok"
	h := newHarness(t, pol(map[string][]*policy.Endpoint{
		"tg": {ep("tg.test", port, loopOK, rest, allow("*", "/**"), creds(
			&policy.Credential{Name: "AUTH", Env: "A", In: []string{"header"}},
			&policy.Credential{Name: "KEY", Env: "K", In: []string{"header"}, Header: "x-api-key"},
			&policy.Credential{Name: "TG", Env: "T", In: []string{"path"}},
			&policy.Credential{Name: "Q", Env: "Q", In: []string{"query"}, Param: "token"},
		))},
	}), lookupEnv(map[string]string{"A": hdrSecret, "K": keySecret, "T": pathSecret, "Q": "query-secret"}))
	auth, key, tg, q := placeholderOf(t, h, "AUTH"), placeholderOf(t, h, "KEY"), placeholderOf(t, h, "TG"), placeholderOf(t, h, "Q")
	for _, h2 := range []bool{false, true} {
		c := h.client(h2)
		st, body, resp := h.do(t, c, "GET", u("tg.test", port, "/bot"+tg+"/getMe"), "", map[string]string{"Authorization": "Bearer " + auth, "X-Api-Key": key})
		if st != 200 {
			t.Fatalf("h2=%v bound places: %d %s", h2, st, body)
		}
		if p := resp.Header.Get("X-Path"); p != "/bot"+tg+"/getMe" {
			t.Fatalf("h2=%v: reflected path %q, want the placeholder back", h2, p)
		}
		for _, k := range []string{"Location", "Access-Control-Allow-Origin", "X-Key", "X-Path"} {
			v := resp.Header.Get(k)
			if strings.Contains(v, "secret") || strings.Contains(v, "ABC_tok") || strings.Contains(v, "hdr-secret") {
				t.Fatalf("h2=%v: secret reflected in response header %s: %q", h2, k, v)
			}
		}
		if !strings.Contains(resp.Header.Get("Access-Control-Allow-Origin"), auth) || resp.Header.Get("X-Key") != key {
			t.Fatalf("h2=%v: reflected headers should carry the placeholders: %v", h2, resp.Header)
		}
		if st, body, resp := h.do(t, c, "GET", u("tg.test", port, "/x?a=1&token="+q), "", nil); st != 200 || resp.Header.Get("X-Query-Secret") != "true" {
			t.Fatalf("h2=%v: query credential at its param: %d %s", h2, st, body)
		}
		st, body, _ = h.do(t, c, "GET", u("tg.test", port, "/bot"+tg+"/err"), "", map[string]string{"Authorization": "Bearer " + auth})
		if st != 401 || body != "bad token in /bot"+tg+"/err (Bearer "+auth+")\n" {
			t.Fatalf("h2=%v: error page not scrubbed: %d %q", h2, st, body)
		}
		for _, tc := range []struct {
			path string
			hdr  map[string]string
		}{
			{"/x", map[string]string{"Origin": "https://" + auth}},
			{"/x", map[string]string{"Access-Control-Request-Headers": auth}},
			{"/x", map[string]string{"X-Anything": "Bearer " + auth}},
			{"/x", map[string]string{"Authorization": key}}, // KEY is bound to X-Api-Key only
			{"/x/bot" + tg + "/getMe", nil},                 // TG is bound to segment 1 only
			{"/bot1/" + tg, nil},
			{"/x?other=" + q, nil},        // Q is bound to param token only
			{"/x?token=x" + q, nil},       // ... as its whole value
			{"/x?token=%6e" + q[1:], nil}, // ... spelled as is
		} {
			st, body, _ := h.do(t, c, "GET", u("tg.test", port, tc.path), "", tc.hdr)
			if st != 403 || !strings.Contains(body, "placeholder") {
				t.Fatalf("h2=%v %s %v: misplaced placeholder not refused: %d %s", h2, tc.path, tc.hdr, st, body)
			}
		}
	}
}

// TestCredentialCleartext (issue 13 item 13): a credential is never put on
// a cleartext upstream (absolute-form http://, or CONNECT then plain HTTP)
// unless the credential says cleartext: true.
func TestCredentialCleartext(t *testing.T) {
	t.Parallel()
	_, plain := newPlainUpstream(t)
	_, tlsPort := newTLSUpstream(t)
	h := newHarness(t, pol(map[string][]*policy.Endpoint{
		"plain": {ep("plain.test", plain, loopOK, rest, allow("*", "/**"), creds(&policy.Credential{Name: "AUTH", Env: "A"}))},
		"tg":    {ep("tg.test", tlsPort, loopOK, rest, allow("*", "/**"), creds(&policy.Credential{Name: "AUTH", Env: "A"}))},
		"ok":    {ep("audited.test", plain, loopOK, rest, allow("*", "/**"), creds(&policy.Credential{Name: "AUTH", Env: "A", Cleartext: true}))},
	}), lookupEnv(map[string]string{"A": "clear-secret"}))
	auth := placeholderOf(t, h, "AUTH")
	c := h.client(false)
	st, body, _ := h.do(t, c, "GET", fmt.Sprintf("http://plain.test:%d/x", plain), "", map[string]string{"Authorization": "Bearer " + auth})
	if st != 403 || !strings.Contains(body, "cleartext") {
		t.Fatalf("absolute-form http with a credential: %d %s", st, body)
	}
	st, body, _ = h.do(t, c, "GET", fmt.Sprintf("http://audited.test:%d/x", plain), "", map[string]string{"Authorization": "Bearer " + auth})
	if st != 200 || decodeEcho(t, body).Auth != "Bearer clear-secret" {
		t.Fatalf("cleartext: true: %d %s", st, body)
	}
	// CONNECT, then plain HTTP inside the tunnel.
	conn, err := net.Dial("tcp", h.proxyURL.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	target := fmt.Sprintf("tg.test:%d", tlsPort)
	fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	fmt.Fprintf(conn, "GET /x HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n\r\n", target, auth)
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 403 || !strings.Contains(string(b), "cleartext") {
		t.Fatalf("plain HTTP in a CONNECT tunnel with a credential: %d %s", resp.StatusCode, b)
	}
}

// TestQueryStrictRules (issue 13 item 15): queries Go's parser reads differently
// from upstreams are refused where query rules apply; '*' matches '/'
// inside a value; a deny rule hits when any value of a repeated key
// matches, and an allow rule needs every value.
func TestQueryStrictRules(t *testing.T) {
	t.Parallel()
	_, port := newTLSUpstream(t)
	h := newHarness(t, pol(map[string][]*policy.Endpoint{
		"api": {ep("api.test", port, loopOK, rest, allow("GET", "/open/**"),
			queryRule(false, "GET", "/q", map[string]string{"p": "*"}),
			queryRule(false, "GET", "/m", map[string]string{"mode": "x"}),
			queryRule(true, "GET", "/open/**", map[string]string{"debug": "*"}),
			queryRule(true, "GET", "/open/**", map[string]string{"mode": "admin"}),
			queryRule(true, "GET", "/open/**", map[string]string{"next": "*"}),
		)},
		"plain": {ep("other.test", port, loopOK, rest, allow("GET", "/**"))},
	}), nil)
	c := h.client(false)
	for _, tc := range []struct {
		host, path string
		want       int
	}{
		{"api.test", "/open/a?x=1", 200},
		{"api.test", "/open/a?x=1;debug=1", 403},       // Go drops the pair; others split on ';'
		{"api.test", "/open/a?debug=1%zz", 403},        // Go drops the pair; others keep it
		{"api.test", "/open/a?mode=x&mode=admin", 403}, // one denied value is enough
		{"api.test", "/open/a?next=a/b", 403},          // '*' matches '/'
		{"api.test", "/q?p=a/b/c", 200},
		{"api.test", "/m?mode=x", 200},
		{"api.test", "/m?mode=x&mode=admin", 403}, // every value must be allowed
		{"other.test", "/a?x=1;y=2", 200},         // no query rules: forwarded as sent
	} {
		st, body, _ := h.do(t, c, "GET", u(tc.host, port, tc.path), "", nil)
		if st != tc.want {
			t.Fatalf("%s%s: %d %s, want %d", tc.host, tc.path, st, body, tc.want)
		}
	}
}

// FuzzParseQueryStrict checks the strict parser against the standard one:
// it accepts exactly what url.ParseQuery parses without error, with the
// same values, and never a ';'.
func FuzzParseQueryStrict(f *testing.F) {
	for _, s := range []string{"", "a=1", "a=1&a=2", "x=1;debug=1", "debug=1%zz", "a", "&&", "=1", "a=%20+b", "k%3D=v%26"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		got, err := parseQueryStrict(raw)
		want, werr := url.ParseQuery(raw)
		if (err == nil) != (werr == nil) {
			t.Fatalf("%q: strict err %v, url.ParseQuery err %v", raw, err, werr)
		}
		if err != nil {
			return
		}
		if strings.Contains(raw, ";") {
			t.Fatalf("%q: accepted a ';'", raw)
		}
		if len(got) != len(want) || (len(got) > 0 && !reflect.DeepEqual(got, want)) {
			t.Fatalf("%q: strict %v, url.ParseQuery %v", raw, got, want)
		}
	})
}

// TestEnforceBeatsAudit (issue 13 item 16): an audit-mode endpoint does not
// switch off another group's enforced allow-list for the same host:port.
func TestEnforceBeatsAudit(t *testing.T) {
	t.Parallel()
	_, port := newTLSUpstream(t)
	h := newHarness(t, pol(map[string][]*policy.Endpoint{
		"strict": {ep("api.test", port, loopOK, rest, allow("GET", "/a/**"))},
		"trial":  {ep("api.test", port, loopOK, rest, allow("GET", "/b/**"), func(e *policy.Endpoint) { e.Enforcement = policy.Audit })},
	}), nil)
	c := h.client(false)
	for _, tc := range []struct {
		path string
		want int
	}{{"/a/1", 200}, {"/b/1", 200}, {"/c/1", 403}} {
		if st, body, _ := h.do(t, c, "GET", u("api.test", port, tc.path), "", nil); st != tc.want {
			t.Fatalf("%s: %d %s, want %d", tc.path, st, body, tc.want)
		}
	}
	// Alone, the audit endpoint still only records.
	h2 := newHarness(t, pol(map[string][]*policy.Endpoint{
		"trial": {ep("api.test", port, loopOK, rest, allow("GET", "/b/**"), func(e *policy.Endpoint) { e.Enforcement = policy.Audit })},
	}), nil)
	if st, body, _ := h2.do(t, h2.client(false), "GET", u("api.test", port, "/c/1"), "", nil); st != 200 {
		t.Fatalf("audit alone: %d %s", st, body)
	}
}

// countHandler counts WARN records.
type countHandler struct{ warns atomic.Int64 }

func (c *countHandler) Enabled(context.Context, slog.Level) bool { return true }
func (c *countHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		c.warns.Add(1)
	}
	return nil
}
func (c *countHandler) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c *countHandler) WithGroup(string) slog.Handler      { return c }

// TestAuditBounded (issue 13 item 17): endless distinct refused names keep
// the summary map and the operator log bounded, a long path is cut, and
// the audit log stops at its cap with one line saying so.
func TestAuditBounded(t *testing.T) {
	t.Parallel()
	var buf testutil.Buffer
	ch := &countHandler{}
	const limit = 64 << 10
	a := newAuditor(&buf, slog.New(ch), "s", limit)
	for i := range maxSummaries + 500 {
		a.record(&Event{Class: "DNS Activity", Activity: "query", Decision: Deny, Host: fmt.Sprintf("n%d.exfil.test", i)})
	}
	a.record(&Event{Class: "HTTP Activity", Activity: "request", Decision: Deny, Host: "x.test", Path: "/" + strings.Repeat("a", 1<<20)})
	if n := len(a.summaries()); n > maxSummaries+1 {
		t.Fatalf("%d summaries kept, want at most %d", n, maxSummaries+1)
	}
	if w := ch.warns.Load(); w > maxWarned+2 {
		t.Fatalf("%d WARN lines for distinct denials, want at most %d", w, maxWarned+2)
	}
	a.close()
	var decisions, capLines int
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if len(line) > 4096 {
			t.Fatalf("audit line of %d bytes", len(line))
		}
		switch {
		case strings.Contains(line, `"activity":"cap"`):
			capLines++
		case !strings.Contains(line, `"activity":"summary"`):
			decisions += len(line) + 1
		}
	}
	if capLines != 1 || decisions > limit {
		t.Fatalf("cap lines %d, %d bytes of decisions (cap %d)", capLines, decisions, limit)
	}
	if !strings.Contains(buf.String(), overflowHost) {
		t.Fatal("no overflow summary")
	}
}

func dnsServe(t *testing.T, h *harness) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = h.p.ServeDNS(pc, nil) }()
	return pc.LocalAddr().String()
}

func dnsAsk(t *testing.T, addr, name string, qtype uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	r, _, err := (&dns.Client{Net: "udp"}).Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return r
}

// TestDNSRateLimit (issue 13 item 17): past the sandbox's DNS rate, queries
// are refused without a host lookup.
func TestDNSRateLimit(t *testing.T) {
	t.Parallel()
	res := &countingResolver{}
	h := newHarness(t, pol(map[string][]*policy.Endpoint{"api": {ep("api.test", 443, loopOK)}}), func(c *Config) { c.Resolver = res })
	h.p.dnsLimit = rate.NewLimiter(0, 2) // no refill: the third query is over
	addr := dnsServe(t, h)
	for i, want := range []int{dns.RcodeSuccess, dns.RcodeSuccess, dns.RcodeRefused} {
		if r := dnsAsk(t, addr, "api.test.", dns.TypeA); r.Rcode != want {
			t.Fatalf("query %d: rcode %s, want %s", i, dns.RcodeToString[r.Rcode], dns.RcodeToString[want])
		}
	}
	if n := len(res.asked()); n != 2 {
		t.Fatalf("%d host lookups, want 2", n)
	}
}

// TestApprovalsEscaping (issue 13 item 18): agent-controlled strings are
// escaped by Printable and in the audit and operator logs (the approvals
// UI's own test is runner/cli TestApprovalsUIEscaping).
func TestApprovalsEscaping(t *testing.T) {
	t.Parallel()
	evil := "/tmp/x\x1b[2K\x1b[1G#1 api.github.com:443 /usr/bin/git\u202e\x9b2J"
	for in, want := range map[string]string{"/usr/bin/git": "/usr/bin/git", "a\\b": `a\\b`, "\xff": `\xff`, "ünï": "ünï"} {
		if got := Printable(in); got != want {
			t.Fatalf("Printable(%q) = %q, want %q", in, got, want)
		}
	}
	var b []byte
	if b = appendJSONString(b, "a\x7f\u0085\u202eb"); bytes.ContainsAny(b, "\x7f\u0085\u202e") {
		t.Fatalf("audit string holds controls raw: %q", b)
	}
	// The operator's log (a JSON handler passes C1 and bidi characters raw).
	var logBuf bytes.Buffer
	a := newAuditor(nil, slog.New(slog.NewJSONHandler(&logBuf, nil)), "s", 0)
	a.record(&Event{Decision: Deny, Host: "evil.test", Port: 443, Binary: evil})
	a.close()
	if strings.Contains(logBuf.String(), "\u202e") || strings.Contains(logBuf.String(), "\x1b") || !strings.Contains(logBuf.String(), "evil.test") {
		t.Fatalf("operator log holds controls raw: %q", logBuf.String())
	}
}

// TestEncodedSlashDeny (issue 13 item 19): with allow_encoded_slash, "%2F"
// inside a segment and "..%2F" cannot step around a deny rule.
func TestEncodedSlashDeny(t *testing.T) {
	t.Parallel()
	_, port := newTLSUpstream(t)
	h := newHarness(t, pol(map[string][]*policy.Endpoint{
		"api": {ep("api.test", port, loopOK, rest, allow("GET", "/**"), denyRule("GET", "/admin/**"), func(e *policy.Endpoint) { e.AllowEncodedSlash = true })},
	}), nil)
	c := h.client(false)
	for _, tc := range []struct {
		path string
		want int
	}{
		{"/admin%2Fusers", 403},
		{"/public/..%2Fadmin/users", 403},
		{"/public/%2E%2E%2Fadmin", 403},
		{"/files/a%2Fb", 200},
		{"/admin/x", 403},
	} {
		if st, body, _ := h.do(t, c, "GET", u("api.test", port, tc.path), "", nil); st != tc.want {
			t.Fatalf("%s: %d %s, want %d", tc.path, st, body, tc.want)
		}
	}
}

// TestDNSEscapedDot (issue 13 item 19): a label holding an escaped dot does
// not match a wildcard and is never sent to the host's resolver.
func TestDNSEscapedDot(t *testing.T) {
	t.Parallel()
	res := &countingResolver{}
	h := newHarness(t, pol(map[string][]*policy.Endpoint{"w": {ep("*.wild.test", 443)}}), func(c *Config) { c.Resolver = res })
	addr := dnsServe(t, h)
	if r := dnsAsk(t, addr, `x\.wild.test.`, dns.TypeA); r.Rcode != dns.RcodeRefused {
		t.Fatalf("escaped dot: rcode %s, want REFUSED", dns.RcodeToString[r.Rcode])
	}
	if got := res.asked(); len(got) != 0 {
		t.Fatalf("names sent to the host resolver: %q", got)
	}
}

// TestEmbeddedIPv4Classes (issue 13 item 19): NAT64 local-use and
// IPv4-compatible addresses are not public.
func TestEmbeddedIPv4Classes(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]ipClass{
		"64:ff9b:1::a9fe:a9fe": classNever,   // local-use NAT64 of 169.254.169.254
		"64:ff9b:1::808:808":   classPrivate, // a site's own translator
		"64:ff9b:1::a00:5":     classPrivate,
		"::a9fe:a9fe":          classNever, // IPv4-compatible
		"::8.8.8.8":            classNever,
		"::1":                  classLoopback,
		"::":                   classNever,
		"64:ff9b::808:808":     classPublic,
	} {
		if got := classify(netip.MustParseAddr(s)); got != want {
			t.Errorf("classify(%s) = %s, want %s", s, got, want)
		}
	}
}

// TestNoProxyLoopback (issue 13 item 19): when the policy opens a host
// loopback service, NO_PROXY does not send that address to the sandbox's
// own loopback; localhost stays the sandbox's own.
func TestNoProxyLoopback(t *testing.T) {
	t.Parallel()
	get := func(h *harness) string {
		for _, kv := range h.p.Env("http://127.0.0.1:3128", "/b", "/c") {
			if v, ok := strings.CutPrefix(kv, "NO_PROXY="); ok {
				return v
			}
		}
		return ""
	}
	if got := get(newHarness(t, pol(map[string][]*policy.Endpoint{"a": {ep("api.test", 443)}}), nil)); got != "localhost,127.0.0.1,::1" {
		t.Fatalf("no loopback in policy: NO_PROXY=%s", got)
	}
	if got := get(newHarness(t, pol(map[string][]*policy.Endpoint{"o": {ep("127.0.0.1", 11434)}}), nil)); got != "localhost,::1" {
		t.Fatalf("policy opens 127.0.0.1:11434: NO_PROXY=%s", got)
	}
	if got := get(newHarness(t, pol(map[string][]*policy.Endpoint{"o": {ep("", 8080, func(e *policy.Endpoint) { e.AllowedIPs = []string{"::1"} })}}), nil)); got != "localhost,127.0.0.1" {
		t.Fatalf("policy opens [::1]:8080: NO_PROXY=%s", got)
	}
	// A loopback port the policy does not open says where the sandbox's own is.
	h := newHarness(t, pol(map[string][]*policy.Endpoint{"o": {ep("127.0.0.1", 11434)}}), nil)
	st, body, _ := h.do(t, h.client(false), "GET", "http://127.0.0.1:9/x", "", nil)
	if st != 403 || !strings.Contains(body, "localhost:9") {
		t.Fatalf("unopened loopback port: %d %s", st, body)
	}
}

// TestInferenceLocal (issue 13 item 20): inference.local never reaches the
// host's resolver or a dial; DNS answers it locally and the proxy says
// that no inference router is running.
func TestInferenceLocal(t *testing.T) {
	t.Parallel()
	res := &countingResolver{}
	h := newHarness(t, pol(map[string][]*policy.Endpoint{
		"api": {ep("api.test", 443, loopOK)},
		"inf": {ep("inference.local", 443), ep("inference.local", 80)}, // even when a policy names it
	}), func(c *Config) { c.Resolver = res })
	addr := dnsServe(t, h)
	r := dnsAsk(t, addr, "inference.local.", dns.TypeA)
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "127.0.0.2" {
		t.Fatalf("DNS inference.local: %v", r)
	}
	c := h.client(false)
	st, body, _ := h.do(t, c, "GET", "http://inference.local/v1/models", "", nil)
	if st != 503 || decodeDenial(t, body).Error != "no inference router is running" {
		t.Fatalf("http://inference.local: %d %s", st, body)
	}
	conn, err := net.Dial("tcp", h.proxyURL.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "CONNECT inference.local:443 HTTP/1.1\r\nHost: inference.local:443\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil || resp.StatusCode != 503 {
		t.Fatalf("CONNECT inference.local: %v %v", resp, err)
	}
	if got := res.asked(); len(got) != 0 {
		t.Fatalf("names sent to the host resolver: %q", got)
	}
}

// TestControlRefusesSandboxPidNamespace (issue 13 item 2): a client in
// another pid namespace (as every sandbox is) is refused even with the
// owner's uid. The client is this test binary, re-run in a new user and pid
// namespace that maps its uid to ours.
func TestControlRefusesSandboxPidNamespace(t *testing.T) {
	if sock := os.Getenv("EGRESS_TEST_CONTROL_CLIENT"); sock != "" {
		_, err := (&Client{Path: sock, Timeout: 10 * time.Second}).Status(context.Background())
		fmt.Printf("client result: %v\n", err)
		os.Exit(0)
	}
	t.Parallel()
	_, client := controlHarness(t, pol(map[string][]*policy.Endpoint{"api": {ep("api.test", 443)}}), nil)
	if _, err := client.Status(context.Background()); err != nil {
		t.Fatalf("client in the supervisor's pid namespace: %v", err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestControlRefusesSandboxPidNamespace$")
	cmd.Env = append(os.Environ(), "EGRESS_TEST_CONTROL_CLIENT="+client.Path)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWPID,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: os.Getuid(), HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: os.Getgid(), HostID: os.Getgid(), Size: 1}},
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("client in a new pid namespace: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "client result: control: client pid") || !strings.Contains(string(out), "another pid namespace") {
		t.Fatalf("client in a new pid namespace was not refused:\n%s", out)
	}
}

// TestCredentialDeclarationErrors: a credential's place must be one the
// proxy can substitute in and the upstream receives.
func TestCredentialDeclarationErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		c    *policy.Credential
		want string
	}{
		{&policy.Credential{Name: "Q", Env: "X", In: []string{"query"}}, "param"},
		{&policy.Credential{Name: "H", Env: "X", In: []string{"header"}, Header: "Proxy-Authorization"}, "end-to-end"},
		{&policy.Credential{Name: "H", Env: "X", In: []string{"header"}, Header: "X Bad"}, "header"},
		{&policy.Credential{Name: "P", Env: "X", In: []string{"path"}, Segment: -1}, "segment"},
	} {
		_, err := New(Config{Policy: pol(map[string][]*policy.Endpoint{"a": {ep("api.test", 443, rest, creds(tc.c))}}),
			LookupEnv: func(string) (string, bool) { return "s", true }})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("%+v: %v, want an error naming %q", tc.c, err, tc.want)
		}
	}
}
