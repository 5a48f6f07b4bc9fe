package egress

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// HTTP/1.1 is served by net/http: one http.Server on the proxy listener
// (CONNECT and absolute-form requests) and one for the HTTP/1.1 requests
// inside intercepted tunnels; allowed requests go through
// httputil.ReverseProxy, as h2 requests do, to a pooled http.Transport or,
// for bodiless plain-HTTP requests, to h1Pool (h1up.go), which keeps the
// standard serializer and parser without Transport's goroutine hand-offs.
// The server and the transports own framing (Expect: 100-continue,
// chunking, keep-alive, retries of requests that are safe to replay); the
// proxy owns the decision, the credentials and the audit line, in
// ServeHTTP and evalRequest for both protocols.

// httpLimits bounds what a sandbox can make the supervisor hold.
type httpLimits struct {
	// maxHeaderBytes bounds a request head (net/http allows 4 KiB more).
	maxHeaderBytes int
	// maxRespHeaderBytes bounds an upstream response head.
	maxRespHeaderBytes int64
	// readHeaderTimeout bounds the time to send a request head.
	readHeaderTimeout time.Duration
	// idleTimeout closes a client connection idle between requests.
	idleTimeout time.Duration
	// maxConns bounds client connections (served and tunnels); past it a
	// new connection first evicts the longest-idle one, else is closed.
	maxConns int
	// maxIdleConns bounds client connections idle between requests; past
	// it the longest-idle one is closed.
	maxIdleConns int
	// upstream pool (per dial class): idle connections in all, per host,
	// and how long one stays idle.
	upIdle, upIdlePerHost int
	upIdleTimeout         time.Duration
	// transportOnly sends every upstream request through http.Transport
	// (the reference side of TestH1PoolMatchesTransport).
	transportOnly bool
}

var defaultLimits = httpLimits{
	maxHeaderBytes:     32 << 10,
	maxRespHeaderBytes: 64 << 10,
	readHeaderTimeout:  10 * time.Second,
	idleTimeout:        2 * time.Minute,
	maxConns:           2048,
	maxIdleConns:       1024,
	upIdle:             1024,
	upIdlePerHost:      1024,
	upIdleTimeout:      90 * time.Second,
}

// clientConn is one connection accepted on the proxy listener.
type clientConn struct {
	c  net.Conn
	ci *connInfo
	// idleSince is set while the connection (or the HTTP/1.1 tunnel it
	// carries) waits between requests; guarded by Proxy.mu.
	idleSince time.Time
	// hijacked: taken from the server (a WebSocket upgrade or a CONNECT);
	// guarded by Proxy.mu.
	hijacked bool
}

// newServer builds the HTTP/1.1 server for the proxy listener or, with
// inner, for the connections inside intercepted tunnels.
func (p *Proxy) newServer(inner bool) *http.Server {
	s := &http.Server{
		Handler:           p,
		ReadHeaderTimeout: p.lim.readHeaderTimeout,
		IdleTimeout:       p.lim.idleTimeout,
		MaxHeaderBytes:    p.lim.maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
		ConnState:         p.connState,
		// Only HTTP/1.1 here: h2 is negotiated by ALPN in serveTunnel.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
	}
	if inner {
		s.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey, c.(*tunnelConn).ci)
		}
	} else {
		s.ConnContext = p.accept
	}
	return s
}

// accept registers a connection from the proxy listener, enforcing the
// connection cap, and attaches its connInfo.
func (p *Proxy) accept(ctx context.Context, c net.Conn) context.Context {
	ap, _ := netip.ParseAddrPort(c.RemoteAddr().String())
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	ci := &connInfo{client: ap, peer: &peerCache{nsPid: int(p.nsPid.Load()), addr: ap, sem: p.peerSem}}
	cc := &clientConn{c: c, ci: ci}
	ci.cc = cc
	var evict net.Conn
	p.mu.Lock()
	switch {
	case p.closed:
		evict = c // by Finish or Close: closed unanswered
	case len(p.conns) >= p.lim.maxConns:
		if old := p.oldestIdleLocked(); old != nil {
			evict = old.c
			p.forgetLocked(old)
			p.conns[c] = cc
		} else {
			evict = c
		}
	default:
		p.conns[c] = cc
	}
	p.mu.Unlock()
	if evict != nil {
		if evict == c {
			p.log.Warn("egress connection refused", "client", ap, "reason",
				fmt.Sprintf("%d client connections are open (the proxy's cap) and none is idle", p.lim.maxConns))
		}
		_ = evict.Close()
	}
	return context.WithValue(ctx, connKey, ci)
}

// connState tracks idleness (for the idle cap) and request heads that the
// server refused before the handler saw them (for the audit log).
func (p *Proxy) connState(c net.Conn, s http.ConnState) {
	var ci *connInfo
	if tc, ok := c.(*tunnelConn); ok {
		ci = tc.ci
		if s == http.StateClosed || s == http.StateHijacked {
			tc.closed()
		}
	} else {
		p.mu.Lock()
		if cc := p.conns[c]; cc != nil {
			ci = cc.ci
		}
		p.mu.Unlock()
	}
	if ci == nil {
		return
	}
	switch s {
	case http.StateActive:
		ci.pending.Store(true)
		p.setIdle(ci.cc, false)
	case http.StateIdle:
		p.setIdle(ci.cc, true)
	case http.StateHijacked:
		if ci.tunnel == nil {
			p.mu.Lock()
			ci.cc.hijacked = true
			p.mu.Unlock()
		}
	case http.StateClosed:
		if ci.pending.Swap(false) {
			p.auditRefused(ci, 0, "the request head was malformed, over the size limit, or not complete in time; the proxy answered 400/431/408 or closed the connection")
		}
		if ci.tunnel == nil {
			p.untrack(c)
		} else {
			p.setIdle(ci.cc, false)
		}
	}
}

// setIdle marks cc idle or busy and closes the longest-idle connection
// when there are more idle ones than the cap.
func (p *Proxy) setIdle(cc *clientConn, idle bool) {
	if cc == nil {
		return
	}
	var evict net.Conn
	p.mu.Lock()
	if _, ok := p.conns[cc.c]; ok {
		switch {
		case idle && cc.idleSince.IsZero():
			cc.idleSince = time.Now()
			p.idle++
		case !idle && !cc.idleSince.IsZero():
			cc.idleSince = time.Time{}
			p.idle--
		}
		if p.idle > p.lim.maxIdleConns {
			if old := p.oldestIdleLocked(); old != nil {
				evict = old.c
				p.forgetLocked(old)
			}
		}
	}
	p.mu.Unlock()
	if evict != nil {
		_ = evict.Close()
	}
}

// oldestIdleLocked finds the connection idle the longest (O(n), only when
// a cap is reached).
func (p *Proxy) oldestIdleLocked() *clientConn {
	var old *clientConn
	for _, cc := range p.conns {
		if !cc.idleSince.IsZero() && (old == nil || cc.idleSince.Before(old.idleSince)) {
			old = cc
		}
	}
	return old
}

func (p *Proxy) forgetLocked(cc *clientConn) {
	if !cc.idleSince.IsZero() {
		p.idle--
		cc.idleSince = time.Time{}
	}
	delete(p.conns, cc.c)
}

// untrackHijacked forgets a connection the handler's reverse proxy took
// over (a WebSocket upgrade), once the handler is done with it.
func (p *Proxy) untrackHijacked(cc *clientConn) {
	p.mu.Lock()
	if cc.hijacked {
		p.forgetLocked(cc)
	}
	p.mu.Unlock()
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	if cc := p.conns[c]; cc != nil {
		p.forgetLocked(cc)
	}
	p.mu.Unlock()
}

// auditRefused records a request the proxy refused before deciding it:
// a malformed or incomplete request, or an h2 stream error.
func (p *Proxy) auditRefused(ci *connInfo, status int, reason string) {
	ev := &Event{Class: "HTTP Activity", Activity: "request", Decision: Deny, Reason: reason, Status: status, Gen: p.Generation()}
	if ci.tunnel != nil {
		ev.Host, ev.Port = ci.tunnel.host, ci.tunnel.port
	}
	p.audit.record(ev)
}

// tunnelConn is the client side of an intercepted tunnel (TLS terminated
// or plain), served by Proxy.inner.
type tunnelConn struct {
	net.Conn
	ci   *connInfo
	once sync.Once
	done chan struct{}
}

func (t *tunnelConn) closed() { t.once.Do(func() { close(t.done) }) }

// oneConnListener hands one connection to http.Server.Serve and then
// blocks until that connection is closed or hijacked, so that Serve
// returns when the tunnel ends.
type oneConnListener struct {
	c      *tunnelConn
	handed bool
}

// Accept implements net.Listener.
func (l *oneConnListener) Accept() (net.Conn, error) {
	if !l.handed {
		l.handed = true
		return l.c, nil
	}
	<-l.c.done
	return nil, io.EOF
}

// Close implements net.Listener.
func (l *oneConnListener) Close() error { l.c.closed(); return nil }

// Addr implements net.Listener.
func (l *oneConnListener) Addr() net.Addr { return l.c.LocalAddr() }

// serveTunnelH1 serves HTTP/1.1 on an intercepted tunnel until it closes.
func (p *Proxy) serveTunnelH1(c net.Conn, ci *connInfo) {
	tc := &tunnelConn{Conn: c, ci: ci, done: make(chan struct{})}
	l := &oneConnListener{c: tc}
	_ = p.inner.Serve(l)
	if !l.handed { // the proxy is closing
		c.Close()
	}
}

// serveConnect decides a CONNECT, then tunnels the bytes or inspects them.
// Every outcome leaves an audit line.
func (p *Proxy) serveConnect(w http.ResponseWriter, r *http.Request, ci *connInfo) {
	host, port, err := splitHostPort(r.Host, 0)
	if err != nil || port == 0 {
		p.badRequest(w, r, ci, "CONNECT needs host:port, got "+clip(r.Host))
		return
	}
	t, err := parseTarget(host, port)
	if err != nil {
		p.denyRequest(w, r, ci, target{host: clip(host), port: port}, &verdict{action: Deny, reason: err.Error(),
			missing: "use the host's DNS name or its canonical dotted-quad address"}, "")
		return
	}
	if t.host == inferenceHost {
		p.connectInference(w, r, ci, t)
		return
	}
	g := p.gen.Load()
	cands, v := g.candidates(t, ci.peer.get, p.appr.granted())
	if v != nil && v.noEndpoint {
		if p.waitApproval(r.Context(), t, ci, r.Method, "") {
			g = p.gen.Load()
			cands, v = g.candidates(t, ci.peer.get, p.appr.granted())
		}
	}
	if v != nil {
		p.denyRequest(w, r, ci, t, v, "")
		return
	}
	if needsInspection(cands) {
		p.record(&Event{Class: "Network Activity", Activity: "connect", Decision: Allow, Host: t.host, Port: t.port,
			Rule: "inspect " + cands[0].ruleName(), Gen: g.id}, ci, cands)
		if c := p.established(w, ci); c != nil {
			p.serveTunnel(c, ci, t)
		}
		return
	}
	var (
		upc  net.Conn
		last error
		used *endpoint
	)
	for _, e := range cands {
		if upc, last = p.dialChecked(r.Context(), t, e); last == nil {
			used = e
			break
		}
	}
	if upc == nil {
		var se *ssrfError
		if errors.As(last, &se) {
			p.denyRequest(w, r, ci, t, &verdict{action: Deny, reason: se.Error(),
				missing: fmt.Sprintf("allowed_ips covering the address on %s (loopback and private ranges must be named)", se.rule)}, "")
			return
		}
		msg := fmt.Sprintf("connect %s: %v", t, last)
		p.record(&Event{Class: "Network Activity", Activity: "connect", Decision: Allow, Host: t.host, Port: t.port,
			Rule: cands[0].ruleName(), Reason: "upstream unreachable: " + msg, Status: http.StatusBadGateway, Gen: g.id}, ci, cands)
		p.gatewayError(w, msg)
		return
	}
	p.record(&Event{Class: "Network Activity", Activity: "connect", Decision: Allow, Host: t.host, Port: t.port,
		Rule: used.ruleName(), Gen: g.id}, ci, cands)
	c := p.established(w, ci)
	if c == nil {
		upc.Close()
		return
	}
	p.spliceConns(c, upc)
}

// established takes the client connection from the server and answers the
// CONNECT; nil when the client is gone. The caller owns the connection.
func (p *Proxy) established(w http.ResponseWriter, ci *connInfo) net.Conn {
	c, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		p.log.Debug("egress connect hijack", "err", err)
		return nil
	}
	_ = c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		c.Close()
		p.untrack(ci.cc.c)
		return nil
	}
	if brw.Reader.Buffered() > 0 {
		return &trackedConn{Conn: &peekConn{Conn: c, r: brw.Reader}, p: p, key: ci.cc.c}
	}
	return &trackedConn{Conn: c, p: p, key: ci.cc.c}
}

// trackedConn is a hijacked client connection that leaves the proxy's
// connection table when it is closed.
type trackedConn struct {
	net.Conn
	p    *Proxy
	key  net.Conn
	once sync.Once
}

// Close implements net.Conn.
func (t *trackedConn) Close() error {
	err := t.Conn.Close()
	t.once.Do(func() { t.p.untrack(t.key) })
	return err
}

// CloseWrite half-closes the underlying TCP connection.
func (t *trackedConn) CloseWrite() error {
	if cw, ok := t.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return t.Conn.Close()
}

// CloseWrite lets spliceConns half-close a peeked connection.
func (c *peekConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

// transports holds the upstream pools of each dial class: the endpoint
// fields that decide which addresses may be dialled. A pooled upstream
// connection is reused only for requests whose endpoint would have dialled
// it, and the pools outlive policy generations (a reload that keeps an
// endpoint's address rules keeps its connections).
type transports struct {
	p  *Proxy
	mu sync.Mutex
	m  map[string]*upstream
}

// upstream is one dial class's pools: h1Pool for plain-HTTP/1.1 requests
// without a body (see h1up.go), http.Transport for everything else.
type upstream struct {
	tr   *http.Transport
	lean *h1Pool
}

// dialClass keys the transports: everything ipAllowed reads.
func dialClass(e *endpoint) string {
	if len(e.nets) == 0 && !e.hostIP.IsValid() && !e.exact {
		return ""
	}
	var b strings.Builder
	b.WriteString(strconv.FormatBool(e.exact))
	b.WriteByte('|')
	b.WriteString(e.hostIP.String())
	for _, n := range e.nets {
		b.WriteByte('|')
		b.WriteString(n.String())
	}
	return b.String()
}

func (ts *transports) get(class string) *upstream {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if u := ts.m[class]; u != nil {
		return u
	}
	p := ts.p
	tr := &http.Transport{
		DialContext:            p.dialForward,
		TLSClientConfig:        &tls.Config{RootCAs: p.cfg.UpstreamRoots, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           p.lim.upIdle,
		MaxIdleConnsPerHost:    p.lim.upIdlePerHost,
		IdleConnTimeout:        p.lim.upIdleTimeout,
		TLSHandshakeTimeout:    15 * time.Second,
		ExpectContinueTimeout:  time.Second,
		ResponseHeaderTimeout:  0, // model calls can think for minutes
		MaxResponseHeaderBytes: p.lim.maxRespHeaderBytes,
		// Pass bodies as they are: no Accept-Encoding added, nothing
		// decompressed.
		DisableCompression: true,
	}
	lean := &h1Pool{
		dial: func(ctx context.Context) (net.Conn, error) {
			return p.dialForward(ctx, "tcp", "")
		},
		perHost: p.lim.upIdlePerHost, total: p.lim.upIdle, idle: p.lim.upIdleTimeout,
		maxHead: p.lim.maxRespHeaderBytes, conns: map[string][]*h1Conn{},
	}
	u := &upstream{tr: tr, lean: lean}
	ts.m[class] = u
	return u
}

// RoundTrip implements http.RoundTripper for the reverse proxy.
func (ts *transports) RoundTrip(r *http.Request) (*http.Response, error) {
	f, ok := r.Context().Value(fwdKey).(*fwd)
	if !ok || f.ep == nil {
		return nil, errors.New("round trip: no policy decision attached")
	}
	u := ts.get(f.ep.class)
	if leanEligible(r) && !ts.p.lim.transportOnly {
		return u.lean.roundTrip(r)
	}
	return u.tr.RoundTrip(r)
}

// retain drops the transports no endpoint of g uses any more, closing
// their idle connections (busy ones close when their response ends and
// the idle timeout passes).
func (ts *transports) retain(g *generation) {
	keep := map[string]bool{"": true}
	for _, e := range g.eps {
		keep[e.class] = true
	}
	ts.mu.Lock()
	var drop []*upstream
	for k, u := range ts.m {
		if !keep[k] {
			drop = append(drop, u)
			delete(ts.m, k)
		}
	}
	ts.mu.Unlock()
	for _, u := range drop {
		u.tr.CloseIdleConnections()
		u.lean.closeIdle(true)
	}
}

func (ts *transports) closeIdle() {
	ts.mu.Lock()
	us := slices.Collect(maps.Values(ts.m))
	ts.mu.Unlock()
	for _, u := range us {
		u.tr.CloseIdleConnections()
		u.lean.closeIdle(false)
	}
}

// peekConn is a conn whose first bytes were already read into r.
type peekConn struct {
	net.Conn
	r *bufio.Reader
}

// Read implements io.Reader.
func (c *peekConn) Read(b []byte) (int, error) { return c.r.Read(b) }
