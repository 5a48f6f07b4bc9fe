package egress

import (
	"errors"
	"net/http"
	"net/netip"
	"strings"
	"testing"
)

func TestCanonicalize(t *testing.T) {
	t.Parallel()
	cases := []struct {
		raw, want, escaped string
		slash              bool
		err                bool
	}{
		{raw: "/", want: "/", escaped: "/"},
		{raw: "", want: "/", escaped: "/"},
		{raw: "/a/b", want: "/a/b", escaped: "/a/b"},
		{raw: "/a/b/", want: "/a/b/", escaped: "/a/b/"},
		{raw: "/a//b", want: "/a/b", escaped: "/a/b"},
		{raw: "//a", want: "/a", escaped: "/a"},
		{raw: "/a/./b", want: "/a/b", escaped: "/a/b"},
		{raw: "/a/../b", want: "/b", escaped: "/b"},
		{raw: "/a/%2e%2e/b", want: "/b", escaped: "/b"},
		{raw: "/a/%2E./b", want: "/b", escaped: "/b"},
		{raw: "/a/..;/b", want: "/b", escaped: "/b"},
		{raw: "/a;jsessionid=1/b", want: "/a/b", escaped: "/a/b"},
		{raw: "/%61dmin", want: "/admin", escaped: "/%61dmin"},
		{raw: "/a%20b", want: "/a b", escaped: "/a%20b"},
		{raw: "/a/..", want: "/", escaped: "/"},
		{raw: "/..", err: true},
		{raw: "/a/../..", err: true},
		{raw: "/%2e%2e/x", err: true},
		{raw: "/a%2Fb", err: true},
		{raw: "/a%2Fb", slash: true, want: "/a/b", escaped: "/a%2Fb"},
		{raw: "/a%252e", err: true},
		{raw: "/a%25%32%65", err: true},
		{raw: "/a%", err: true},
		{raw: "/a%zz", err: true},
		{raw: "/a%00b", err: true},
		{raw: "/a\\..\\b", err: true},
		{raw: "/a%5c..%5cb", err: true},
		{raw: "/a\x01", err: true},
		{raw: "a/b", err: true},
		{raw: "/a%25b", want: "/a%b", escaped: "/a%25b"},
	}
	for _, tc := range cases {
		t.Run(tc.raw, func(t *testing.T) {
			c, err := Canonicalize(tc.raw, tc.slash)
			if tc.err {
				if err == nil || !errors.Is(err, ErrPath) {
					t.Fatalf("want ErrPath, got %v (%q)", err, c.String())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.slash {
				if got := strings.Join(c.Segments, "|"); got != "a/b" {
					t.Fatalf("segments %q", got)
				}
			} else if c.String() != tc.want {
				t.Fatalf("canonical %q, want %q", c.String(), tc.want)
			}
			if c.Escaped != tc.escaped {
				t.Fatalf("escaped %q, want %q", c.Escaped, tc.escaped)
			}
		})
	}
}

// FuzzCanonicalize checks the canonicaliser's invariants: the result has no
// dot or empty segments, re-canonicalising its escaped form is a fixed
// point, and it never panics.
func FuzzCanonicalize(f *testing.F) {
	for _, s := range []string{"/", "/a/../b", "/%2e%2e/", "/a;x/..;/b", "//a//b/", "/a%2Fb", "/%252e", "/a/./b/.", "/ü/%C3%BC"} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, raw string, slash bool) {
		c, err := Canonicalize(raw, slash)
		if err != nil {
			return
		}
		for _, s := range c.Segments {
			if s == "" || s == "." || s == ".." {
				t.Fatalf("%q: segment %q survived", raw, s)
			}
			if !slash && strings.Contains(s, "/") {
				t.Fatalf("%q: slash inside segment without allow_encoded_slash", raw)
			}
		}
		c2, err := Canonicalize(c.Escaped, slash)
		if err != nil {
			t.Fatalf("%q: escaped form %q does not re-canonicalise: %v", raw, c.Escaped, err)
		}
		if strings.Join(c2.Segments, "\x00") != strings.Join(c.Segments, "\x00") {
			t.Fatalf("%q: not a fixed point: %q vs %q", raw, c.Segments, c2.Segments)
		}
	})
}

// FuzzRequestTarget fuzzes the request line parsing the proxy relies on: Go's
// request reader followed by our target and path extraction.
func FuzzRequestTarget(f *testing.F) {
	for _, s := range []string{
		"CONNECT api.test:443 HTTP/1.1\r\nHost: api.test:443\r\n\r\n",
		"GET http://plain.test:8080/a/../b?x=1 HTTP/1.1\r\nHost: plain.test\r\n\r\n",
		"GET http://2130706433/ HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET http://[::1]:80/ HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /p;a=b/%2e%2e/c HTTP/1.1\r\nHost: api.test\r\n\r\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := http.ReadRequest(bufioReader(s))
		if err != nil {
			return
		}
		hostport := r.Host
		if r.URL.IsAbs() {
			hostport = r.URL.Host
		}
		h, port, err := splitHostPort(hostport, 80)
		if err != nil {
			return
		}
		tg, err := parseTarget(h, port)
		if err == nil {
			if tg.host == "" || tg.port < 1 || tg.port > 65535 {
				t.Fatalf("bad target %+v from %q", tg, hostport)
			}
			if _, loose := parseLooseIPv4(tg.host); loose && !tg.ip.IsValid() {
				t.Fatalf("non-canonical IP %q passed as a name", tg.host)
			}
			if tg.ip.IsValid() && tg.ip != tg.ip.Unmap() {
				t.Fatalf("mapped address kept: %v", tg.ip)
			}
		}
		p := requestPath(r)
		if c, err := Canonicalize(p, false); err == nil && !strings.HasPrefix(c.Escaped, "/") {
			t.Fatalf("escaped path %q", c.Escaped)
		}
	})
}

func TestParseTarget(t *testing.T) {
	t.Parallel()
	cases := []struct {
		host string
		want string
		err  bool
	}{
		{"API.Test.", "api.test", false},
		{"127.0.0.1", "127.0.0.1", false},
		{"[::1]", "::1", false},
		{"::ffff:127.0.0.1", "127.0.0.1", false},
		{"2130706433", "", true},
		{"0177.0.0.1", "", true},
		{"0x7f.0.0.1", "", true},
		{"127.1", "", true},
		{"017700000001", "", true},
		{"metadata.google.internal", "", true},
		{"fe80::1%eth0", "", true},
		{"a b", "", true},
		{"deadbeef", "deadbeef", false},
		{"1.2.3.4.5", "1.2.3.4.5", false},
	}
	for _, tc := range cases {
		tg, err := parseTarget(tc.host, 443)
		if (err != nil) != tc.err || (!tc.err && tg.host != tc.want) {
			t.Errorf("parseTarget(%q) = %+v, %v", tc.host, tg, err)
		}
	}
}

func TestClassify(t *testing.T) {
	t.Parallel()
	cases := map[string]ipClass{
		"8.8.8.8": classPublic, "127.0.0.1": classLoopback, "127.9.9.9": classLoopback, "::1": classLoopback,
		"10.1.2.3": classPrivate, "172.16.0.1": classPrivate, "192.168.1.1": classPrivate, "100.64.0.1": classPrivate,
		"fd00::1": classPrivate, "169.254.169.254": classNever, "fe80::1": classNever, "0.0.0.0": classNever,
		"::": classNever, "224.0.0.1": classNever, "::ffff:169.254.169.254": classNever, "64:ff9b::a9fe:a9fe": classNever,
		"64:ff9b::7f00:1": classLoopback, "2002:7f00:1::": classLoopback, "fd00:ec2::254": classNever, "100.100.100.200": classNever,
		"2606:4700::1111": classPublic,
	}
	for s, want := range cases {
		if got := classify(netip.MustParseAddr(s)); got != want {
			t.Errorf("classify(%s) = %v, want %v", s, got, want)
		}
	}
}

func TestHostPatterns(t *testing.T) {
	t.Parallel()
	cases := []struct {
		pat, host string
		want      bool
	}{
		{"api.example.com", "api.example.com", true},
		{"api.example.com", "x.api.example.com", false},
		{"*.example.com", "a.example.com", true},
		{"*.example.com", "a.b.example.com", false},
		{"*.example.com", "example.com", false},
		{"**.example.com", "a.example.com", true},
		{"**.example.com", "a.b.c.example.com", true},
		{"**.example.com", "example.com", false},
		{"**.example.com", "badexample.com", false},
		{"api-*.example.com", "api-eu.example.com", true},
		{"api-*.example.com", "web.example.com", false},
	}
	for _, tc := range cases {
		hp, err := compileHost(tc.pat)
		if err != nil {
			t.Fatal(err)
		}
		if got := hp.match(tc.host); got != tc.want {
			t.Errorf("%s ~ %s = %v", tc.pat, tc.host, got)
		}
	}
}

func TestPathGlobs(t *testing.T) {
	t.Parallel()
	cases := []struct {
		glob, path string
		want       bool
	}{
		{"/**", "/", true},
		{"/**", "/a/b/c", true},
		{"/v1/*", "/v1/x", true},
		{"/v1/*", "/v1/x/y", false},
		{"/v1/**/items", "/v1/items", true},
		{"/v1/**/items", "/v1/a/b/items", true},
		{"/bot*/**", "/bot123:abc/getMe", true},
		{"/bot*/**", "/botany", true},
		{"/bot*/**", "/other/getMe", false},
		{"/", "/", true},
		{"/", "/a", false},
	}
	for _, tc := range cases {
		g, err := compilePathGlob(tc.glob)
		if err != nil {
			t.Fatal(err)
		}
		c, err := Canonicalize(tc.path, false)
		if err != nil {
			t.Fatal(err)
		}
		if got := matchSegments(g, c.Segments); got != tc.want {
			t.Errorf("%s ~ %s = %v", tc.glob, tc.path, got)
		}
	}
}

func TestQueryRules(t *testing.T) {
	t.Parallel()
	r, err := compileRule(&policyMatcher{Method: "GET", Path: "/search", Query: map[string]*policyQuery{"q": {Glob: "cats*"}, "page": {Any: []string{"1", "2"}}}})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := Canonicalize("/search", false)
	for q, want := range map[string]bool{
		"q=catsup&page=1": true, "q=dogs&page=1": false, "q=cats": false, "q=cats&page=3": false, "q=cats&q=dogs&page=2": false,
	} {
		if got := r.matches("GET", c, parseQuery(q)); got != want {
			t.Errorf("%s = %v", q, got)
		}
	}
}
