package egress

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// upstreamStep is how the scripted upstream answers one request path.
type upstreamStep struct {
	resp string // raw response bytes
	// after: "" keeps the connection, "close" closes it after resp,
	// "drop" closes it without answering.
	after string
}

// h1Corpus is the request corpus of the differential test: each case is a
// sequence of requests on one client connection (a new one after a
// response that closes it), answered by the scripted upstream.
//
// Requests with a body (or Expect, or an upgrade) keep http.Transport and
// its own pool, so in the mixed cases the upstream sees them on another
// connection than the bodiless ones: there only the requests, in order,
// are compared, not which connection carried them.
var h1Corpus = []struct {
	name  string
	reqs  []string // "METHOD PATH" plus optional "\nHeader: v" lines; body after "\n\n"
	mixed bool
}{
	{"get", []string{"GET /ok"}, false},
	{"keep-alive reuse", []string{"GET /ok", "GET /ok?x=1", "GET /ok"}, false},
	{"head", []string{"HEAD /head", "GET /ok"}, false},
	{"204 and 304", []string{"GET /204", "GET /304", "GET /ok"}, false},
	{"chunked response with trailer", []string{"GET /chunked", "GET /ok"}, false},
	{"close-delimited body", []string{"GET /eof-body", "GET /ok"}, false},
	{"connection close", []string{"GET /conn-close", "GET /ok"}, false},
	{"http/1.0 response", []string{"GET /http10", "GET /ok"}, false},
	{"103 early hints", []string{"GET /103", "GET /ok"}, false},
	{"unsolicited 100", []string{"GET /100", "GET /ok"}, false},
	{"oversized response head", []string{"GET /big-head", "GET /ok"}, false},
	{"no answer on a fresh connection", []string{"GET /drop"}, false},
	{"empty post", []string{"POST /ok", "DELETE /ok", "OPTIONS /ok"}, false},
	{"empty post dropped on a reused connection", []string{"GET /ok", "POST /drop"}, false},
	{"idempotent get dropped on a reused connection", []string{"GET /ok", "GET /drop"}, false},
	{"truncated body", []string{"GET /short", "GET /ok"}, false},
	{"upstream closes after answering", []string{"GET /close-after", "GET /ok", "POST /ok"}, false},
	{"bytes after the response", []string{"GET /trailing-garbage", "GET /ok"}, false},
	{"101 without an upgrade", []string{"GET /101"}, false},
	{"sized post body", []string{"POST /ok\nContent-Type: text/plain\n\nhello", "GET /ok"}, true},
	{"chunked post body", []string{"POST /ok\nTransfer-Encoding: chunked\n\nhello", "GET /ok"}, true},
	{"expect 100-continue", []string{"POST /ok\nExpect: 100-continue\n\nhello", "GET /ok"}, true},
	{"hop-by-hop and identity headers", []string{"GET /ok\nConnection: X-Hop\nX-Hop: 1\nX-Forwarded-For: 10.0.0.1\nKeep-Alive: timeout=5\nTE: trailers"}, false},
}

// Responses of unknown length name their Content-Type: ReverseProxy
// flushes their head from a timer goroutine, racing the first body write
// that would make the server sniff one (either transport).
var h1Steps = map[string]upstreamStep{
	"/ok":               {resp: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Up: 1\r\n\r\nok"},
	"/head":             {resp: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"},
	"/204":              {resp: "HTTP/1.1 204 No Content\r\n\r\n"},
	"/304":              {resp: "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\nEtag: \"x\"\r\n\r\n"},
	"/chunked":          {resp: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/x\r\nTrailer: X-T\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\nX-T: v\r\n\r\n"},
	"/eof-body":         {resp: "HTTP/1.1 200 OK\r\nContent-Type: text/x\r\n\r\nuntil the end", after: "close"},
	"/conn-close":       {resp: "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", after: "close"},
	"/http10":           {resp: "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", after: "close"},
	"/103":              {resp: "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"},
	"/100":              {resp: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"},
	"/big-head":         {resp: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n" + strings.Repeat("X-Big: "+strings.Repeat("b", 1000)+"\r\n", 80) + "\r\nok"},
	"/drop":             {after: "drop"},
	"/short":            {resp: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf", after: "close"},
	"/close-after":      {resp: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", after: "close"},
	"/trailing-garbage": {resp: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil"},
	"/101":              {resp: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n", after: "close"},
}

// scriptedUpstream answers with h1Steps and records every request's raw
// bytes, in order, with the number of the connection that carried it.
type scriptedUpstream struct {
	l    net.Listener
	wg   sync.WaitGroup
	mu   sync.Mutex
	n    int
	reqs []string
}

type teeConn struct {
	net.Conn
	mu  *sync.Mutex
	buf *bytes.Buffer
}

func (c teeConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.mu.Lock()
	c.buf.Write(b[:n])
	c.mu.Unlock()
	return n, err
}

func newScriptedUpstream(t *testing.T) *scriptedUpstream {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &scriptedUpstream{l: l}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			u.mu.Lock()
			u.n++
			id := u.n
			u.mu.Unlock()
			u.wg.Add(1)
			go func() {
				defer u.wg.Done()
				defer c.Close()
				u.serve(id, c)
			}()
		}
	}()
	return u
}

func (u *scriptedUpstream) serve(id int, c net.Conn) {
	var mu sync.Mutex
	buf := &bytes.Buffer{}
	br := bufio.NewReader(teeConn{Conn: c, mu: &mu, buf: buf})
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, req.Body)
		mu.Lock()
		raw := buf.Next(buf.Len() - br.Buffered())
		mu.Unlock()
		u.mu.Lock()
		u.reqs = append(u.reqs, fmt.Sprintf("c%d %s", id, raw))
		u.mu.Unlock()
		step := h1Steps[req.URL.Path]
		if step.after == "drop" {
			return
		}
		if _, err := io.WriteString(c, step.resp); err != nil || step.after == "close" {
			return
		}
	}
}

// received is what the upstream read: each request with the number of its
// connection (mixed: without), the port replaced by PORT.
func (u *scriptedUpstream) received(t *testing.T, mixed bool) []string {
	t.Helper()
	u.l.Close()
	done := make(chan struct{})
	go func() { u.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the scripted upstream's connections were not closed")
	}
	port := fmt.Sprint(u.l.Addr().(*net.TCPAddr).Port)
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []string
	for _, r := range u.reqs {
		if mixed {
			_, r, _ = strings.Cut(r, " ")
		}
		out = append(out, strings.ReplaceAll(r, port, "PORT"))
	}
	return out
}

// clientSaw is what the client read for one request.
type clientSaw struct {
	Interim []int // 1xx statuses before the response
	Status  int
	Header  http.Header
	Body    string
	BodyErr bool
	ConnErr bool
}

// runH1Corpus sends each corpus case through a proxy and returns, per
// case, what the client saw and what the upstream received.
func runH1Corpus(t *testing.T, transportOnly bool) (map[string][]clientSaw, map[string][]string) {
	t.Helper()
	saw := map[string][]clientSaw{}
	got := map[string][]string{}
	for _, tc := range h1Corpus {
		up := newScriptedUpstream(t)
		port := up.l.Addr().(*net.TCPAddr).Port
		lim := defaultLimits
		lim.transportOnly = transportOnly
		h := newHarness(t, plainPolicy(port), func(c *Config) { c.limits = &lim })
		var c net.Conn
		var br *bufio.Reader
		for _, spec := range tc.reqs {
			if c == nil {
				var err error
				if c, err = net.Dial("tcp", h.proxyURL.Host); err != nil {
					t.Fatal(err)
				}
				br = bufio.NewReader(c)
			}
			head, body, _ := strings.Cut(spec, "\n\n")
			lines := strings.Split(head, "\n")
			method, path, _ := strings.Cut(lines[0], " ")
			var b strings.Builder
			fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: plain.test:%d\r\nUser-Agent: corpus\r\n", method, plainURL(port, path), port)
			chunked := false
			for _, l := range lines[1:] {
				b.WriteString(l + "\r\n")
				chunked = chunked || strings.HasPrefix(l, "Transfer-Encoding: chunked")
			}
			switch {
			case chunked:
				fmt.Fprintf(&b, "\r\n%x\r\n%s\r\n0\r\n\r\n", len(body), body)
			case body != "":
				fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n%s", len(body), body)
			default:
				b.WriteString("\r\n")
			}
			var s clientSaw
			if _, err := io.WriteString(c, b.String()); err != nil {
				s.ConnErr = true
			}
			res, err := http.ReadResponse(br, &http.Request{Method: method})
			for err == nil && res.StatusCode >= 100 && res.StatusCode <= 199 && res.StatusCode != 101 {
				s.Interim = append(s.Interim, res.StatusCode)
				res, err = http.ReadResponse(br, &http.Request{Method: method})
			}
			if err != nil {
				s.ConnErr = true
				saw[tc.name] = append(saw[tc.name], s)
				c.Close()
				c = nil
				continue
			}
			rb, err := io.ReadAll(res.Body)
			res.Body.Close()
			s.Status, s.Header, s.Body, s.BodyErr = res.StatusCode, res.Header, string(rb), err != nil
			s.Header.Del("Date")
			if s.Status == http.StatusBadGateway {
				// The detail names the transport's own error text.
				s.Body = ""
				s.Header.Del("Content-Length")
			}
			saw[tc.name] = append(saw[tc.name], s)
			if res.Close || err != nil {
				c.Close()
				c = nil
			}
		}
		if c != nil {
			c.Close()
		}
		var sent int64
		h.p.trs.mu.Lock()
		for _, u := range h.p.trs.m {
			sent += u.lean.sent.Load()
		}
		h.p.trs.mu.Unlock()
		if transportOnly != (sent == 0) {
			t.Fatalf("%s: h1Pool sent %d requests (transportOnly %v)", tc.name, sent, transportOnly)
		}
		if err := h.p.Close(); err != nil {
			t.Fatal(err)
		}
		got[tc.name] = up.received(t, tc.mixed)
	}
	return saw, got
}

// TestH1PoolMatchesTransport is the differential test of h1Pool: the same
// corpus through the proxy with h1Pool (bodiless plain-HTTP requests) and
// with http.Transport for everything must give the client the same
// responses and the upstream the same bytes on the same connections.
func TestH1PoolMatchesTransport(t *testing.T) {
	t.Parallel()
	refSaw, refGot := runH1Corpus(t, true)
	saw, got := runH1Corpus(t, false)
	for _, tc := range h1Corpus {
		if !reflect.DeepEqual(saw[tc.name], refSaw[tc.name]) {
			t.Errorf("%s: client saw\n  %+v\nwith h1Pool, and\n  %+v\nwith http.Transport", tc.name, saw[tc.name], refSaw[tc.name])
		}
		if !reflect.DeepEqual(got[tc.name], refGot[tc.name]) {
			t.Errorf("%s: upstream received\n  %q\nwith h1Pool, and\n  %q\nwith http.Transport", tc.name, got[tc.name], refGot[tc.name])
		}
	}
}

// rtOutcome is what a RoundTripper made of one upstream response.
type rtOutcome struct {
	Err     bool
	Status  int
	Header  http.Header
	Body    string
	BodyErr bool
}

func roundTripOutcome(rt http.RoundTripper, r *http.Request) rtOutcome {
	res, err := rt.RoundTrip(r)
	if err != nil {
		return rtOutcome{Err: true}
	}
	b, err := io.ReadAll(res.Body)
	res.Body.Close()
	return rtOutcome{Status: res.StatusCode, Header: res.Header, Body: string(b), BodyErr: err != nil}
}

// FuzzH1PoolResponse feeds arbitrary upstream responses to a GET through
// h1Pool and through http.Transport: both must agree on failure, status,
// headers, body and body failure.
func FuzzH1PoolResponse(f *testing.F) {
	for _, s := range h1Steps {
		if s.resp != "" {
			f.Add([]byte(s.resp))
		}
	}
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"))
	f.Add([]byte("HTTP/1.1 999 Odd\r\n\r\n"))
	f.Add([]byte("garbage"))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	defer l.Close()
	var resp sync.Map // request path -> response bytes
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				if v, ok := resp.Load(req.URL.Path); ok {
					_, _ = c.Write(v.([]byte))
				}
			}()
		}
	}()
	addr := l.Addr().String()
	dial := func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
	lim := defaultLimits
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) },
		DisableCompression: true, MaxResponseHeaderBytes: lim.maxRespHeaderBytes}
	defer tr.CloseIdleConnections()
	hp := &h1Pool{dial: dial, perHost: 4, total: 4, idle: time.Minute, maxHead: lim.maxRespHeaderBytes, conns: map[string][]*h1Conn{}}
	defer hp.closeIdle(true)
	lean := roundTripFunc(hp.roundTrip)
	var n atomic.Int64
	f.Fuzz(func(t *testing.T, raw []byte) {
		path := fmt.Sprintf("/%d", n.Add(1))
		resp.Store(path, raw)
		defer resp.Delete(path)
		req := func() *http.Request {
			r, _ := http.NewRequest("GET", "http://"+addr+path, nil)
			return r
		}
		got := roundTripOutcome(lean, req())
		if got.Status == http.StatusSwitchingProtocols {
			t.Fatalf("h1Pool returned a 101 to a request without an upgrade")
		}
		// Transport's outcome depends on scheduling when bytes follow the
		// response (its reader goroutine may see them first): h1Pool's
		// must be one of Transport's.
		var seen []rtOutcome
		for range 3 {
			want := roundTripOutcome(tr, req())
			if want.Status == http.StatusSwitchingProtocols {
				// A known difference, not a finding: Transport returns a
				// 101 to a request without an upgrade, h1Pool refuses it
				// (checked above); ReverseProxy answers 502 to both.
				return
			}
			if reflect.DeepEqual(got, want) {
				return
			}
			seen = append(seen, want)
		}
		t.Fatalf("h1Pool: %+v\nhttp.Transport: %+v", got, seen)
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestH1PoolClientLeaves: a client that leaves while the upstream thinks
// makes the proxy close the upstream connection (it is not pooled with a
// response still to come) and audit the cancellation, on both upstream
// paths.
func TestH1PoolClientLeaves(t *testing.T) {
	t.Parallel()
	for _, transportOnly := range []bool{false, true} {
		t.Run(fmt.Sprintf("transportOnly=%v", transportOnly), func(t *testing.T) {
			got := make(chan struct{})
			closed := make(chan struct{})
			port := rawUpstream(t, func(c net.Conn) {
				if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
					return
				}
				close(got)
				_, _ = io.Copy(io.Discard, c) // until the proxy closes it
				close(closed)
			})
			lim := defaultLimits
			lim.transportOnly = transportOnly
			h := newHarness(t, plainPolicy(port), func(c *Config) { c.limits = &lim })
			c, err := net.Dial("tcp", h.proxyURL.Host)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: plain.test:%d\r\n\r\n", plainURL(port, "/think"), port)
			<-got
			c.Close()
			<-closed
			waitAudit(t, h, "the cancelled request", func(ev Event) bool {
				return strings.Contains(ev.Reason, "client cancelled")
			})
		})
	}
}

// TestH1PoolCapsAndReaper: idle connections past the per-host cap are
// closed when given back, the rest when idle for longer than the idle
// timeout, and a pool whose dial class is gone pools nothing.
func TestH1PoolCapsAndReaper(t *testing.T) {
	t.Parallel()
	var closedN atomic.Int32
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	up.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateClosed {
			closedN.Add(1)
		}
	}
	up.Start()
	defer up.Close()
	addr := up.Listener.Addr().String()
	hp := &h1Pool{dial: func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}, perHost: 2, total: 8, idle: 50 * time.Millisecond, maxHead: 64 << 10, conns: map[string][]*h1Conn{}}
	var open []*http.Response
	for range 4 { // four at once: four connections
		r, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
		res, err := hp.roundTrip(r)
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, res)
	}
	for _, res := range open {
		_, _ = io.ReadAll(res.Body)
		res.Body.Close()
	}
	hp.mu.Lock()
	idle := hp.n
	hp.mu.Unlock()
	if idle != 2 {
		t.Fatalf("%d idle connections after four were given back, want the per-host cap 2", idle)
	}
	waitFor(t, "the reaper to close the idle connections", func() bool { return closedN.Load() == 4 })
	hp.mu.Lock()
	idle = hp.n
	hp.mu.Unlock()
	if idle != 0 {
		t.Fatalf("%d idle connections left after the idle timeout", idle)
	}

	hp.closeIdle(true)
	r, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
	res, err := hp.roundTrip(r)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.ReadAll(res.Body)
	res.Body.Close()
	waitFor(t, "a connection given back to a closed pool to be closed", func() bool { return closedN.Load() == 5 })
}

// waitFor polls ok until it holds (the test's own timeout bounds it).
func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for !ok() {
		if d, set := t.Deadline(); set && time.Until(d) < 2*time.Second {
			t.Fatalf("still waiting for %s when the test's time ran out", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestH1PoolReapKeepsYounger: a reap that closes the older connections of
// a host and keeps a younger one re-arms on the survivor (it used to read
// the survivor's slot after shifting the list in place: a nil dereference
// that crashed the supervisor).
func TestH1PoolReapKeepsYounger(t *testing.T) {
	now := time.Now()
	var conns []*h1Conn
	var closers []net.Conn
	for _, age := range []time.Duration{time.Hour, time.Hour, 0} {
		a, b := net.Pipe()
		closers = append(closers, b)
		conns = append(conns, &h1Conn{c: a, key: "k", since: now.Add(-age)})
	}
	defer func() {
		for _, c := range closers {
			c.Close()
		}
	}()
	young := conns[2]
	hp := &h1Pool{perHost: 8, total: 8, idle: time.Minute, conns: map[string][]*h1Conn{"k": conns}, n: 3}
	hp.reap()
	hp.mu.Lock()
	defer hp.mu.Unlock()
	if hp.n != 1 || len(hp.conns["k"]) != 1 || hp.conns["k"][0] != young {
		t.Fatalf("after the reap: n=%d, conns=%v; want only the younger connection", hp.n, hp.conns["k"])
	}
	if hp.reaper == nil {
		t.Fatal("the reaper is not re-armed for the younger connection")
	}
	hp.reaper.Stop()
}
