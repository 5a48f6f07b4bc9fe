package egress

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/netip"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// The proxy's own HTTP/1.1 loop. One goroutine per client connection reads
// a request with the standard parser (which refuses ambiguous framing),
// decides it, and forwards it on a connection to the upstream that stays
// with this client connection while it targets the same host. Compared with
// net/http's server + reverse proxy + transport, this saves the background
// reader, the transport's two goroutines and their hand-offs per request.

const (
	idleTimeout    = 5 * time.Minute
	maxHeaderBytes = 1 << 20
)

// upKey identifies interchangeable upstream connections: same scheme and
// target, dialled under the same endpoint's address checks.
type upKey struct {
	scheme, t string
	ep        *endpoint
}

// upstream is a connection to an upstream, pooled between requests.
type upstream struct {
	key  upKey
	idle time.Time
	ep   *endpoint
	conn net.Conn
	// br is held only while a response is read or bytes are buffered.
	br *bufio.Reader
}

func (u *upstream) close() {
	if u != nil && u.conn != nil {
		u.conn.Close()
		if u.br != nil && u.br.Buffered() == 0 {
			putReader(u.br)
		}
		u.br = nil
	}
}

// serveConn serves one connection accepted on the proxy listener.
func (p *Proxy) serveConn(c net.Conn) {
	defer p.untrack(c)
	defer c.Close()
	ap, _ := netip.ParseAddrPort(c.RemoteAddr().String())
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	ci := &connInfo{client: ap, peer: &peerCache{nsPid: int(p.nsPid.Load()), addr: ap}}
	p.h1loop(c, c, ci, nil, "")
}

// h1loop serves HTTP/1.1 requests on c until it closes. tunnel is nil on
// the proxy listener (CONNECT and absolute-form requests), or the target of
// an inspected tunnel (origin-form requests for that target only).
func (p *Proxy) h1loop(c net.Conn, src io.Reader, ci *connInfo, tunnel *target, scheme string) {
	// The request head is read under a size limit (the standard parser has
	// none of its own); bodies are not limited.
	lim := &io.LimitedReader{R: src}
	br := bufio.NewReaderSize(lim, 4096)
	for {
		// One deadline per request: an idle keep-alive connection, a slow
		// header and a stalled body all end after idleTimeout.
		_ = c.SetReadDeadline(time.Now().Add(idleTimeout))
		lim.N = maxHeaderBytes + int64(br.Buffered())
		req, err := http.ReadRequest(br)
		lim.N = math.MaxInt64
		if err != nil {
			if br.Buffered() > 0 || !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !isTimeout(err) {
				writeRaw(newLazyBuf(c), http.StatusBadRequest, "application/json", []byte(`{"error":"bad request","detail":"malformed HTTP request"}`+"\n"), true)
			}
			return
		}
		bw := newLazyBuf(c)
		keep := p.h1request(c, br, bw, req, ci, tunnel, scheme)
		_ = bw.Flush()
		if !keep {
			return
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// h1request handles one request; it reports whether the connection stays
// open for another.
func (p *Proxy) h1request(c net.Conn, br *bufio.Reader, bw *lazyBuf, req *http.Request, ci *connInfo, tunnel *target, scheme string) bool {
	{
		ctx := context.WithValue(context.Background(), connKey, ci)
		var (
			t   target
			sch = scheme
		)
		switch {
		case tunnel != nil:
			t = *tunnel
			if !hostMatchesTunnel(req.Host, t) {
				p.rawDeny(bw, req, ci, t, &verdict{action: Deny,
					reason:  fmt.Sprintf("Host header %q does not match the CONNECT target %s", clip(req.Host), t),
					missing: "send requests for the host the tunnel was opened to"}, "")
				return false
			}
		case req.Method == http.MethodConnect:
			p.rawConnect(ctx, c, br, bw, req, ci)
			return false
		case req.URL.IsAbs() && req.URL.Scheme == "http" && req.URL.Host != "":
			host, port, err := splitHostPort(req.URL.Host, 80)
			if err != nil {
				writeRaw(bw, http.StatusBadRequest, "application/json", []byte(`{"error":"bad proxy request","detail":"bad request target"}`+"\n"), true)
				return false
			}
			t, err = parseTarget(host, port)
			if err != nil {
				p.rawDeny(bw, req, ci, target{host: clip(host), port: port}, &verdict{action: Deny, reason: err.Error(),
					missing: "use the host's DNS name or its canonical dotted-quad address"}, "")
				return false
			}
			sch = "http"
		case req.URL.IsAbs():
			writeRaw(bw, http.StatusBadRequest, "application/json", []byte(fmt.Sprintf(`{"error":"bad proxy request","detail":"scheme %q cannot be forwarded; use CONNECT for https and wss"}`+"\n", req.URL.Scheme)), true)
			return false
		default:
			writeRaw(bw, http.StatusBadRequest, "application/json", []byte(`{"error":"bad proxy request","detail":"this is nemoclaw's egress proxy: send proxy requests (set HTTP_PROXY/HTTPS_PROXY), not origin requests"}`+"\n"), true)
			return false
		}
		f, v, path := p.evalRequest(ctx, req, ci, t, sch)
		if v != nil {
			p.rawDeny(bw, req, ci, t, v, path)
			return false
		}
		return p.forward(ctx, c, br, bw, req, f, ci)
	}
}

func hostMatchesTunnel(h string, t target) bool {
	hh, hp, err := splitHostPort(h, t.port)
	if err != nil || hp != t.port {
		return false
	}
	if strings.EqualFold(strings.TrimSuffix(hh, "."), t.host) {
		return true
	}
	ht, err := parseTarget(hh, hp)
	return err == nil && ht.host == t.host
}

// hopHeaders are connection-scoped and never forwarded.
var hopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

func stripHop(h http.Header, keepUpgrade bool) {
	for _, f := range h["Connection"] {
		for _, k := range strings.Split(f, ",") {
			if k = textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(k)); k != "" && !(keepUpgrade && k == "Upgrade") {
				h.Del(k)
			}
		}
	}
	for _, k := range hopHeaders {
		if keepUpgrade && (k == "Upgrade" || k == "Connection") {
			continue
		}
		h.Del(k)
	}
}

// forward sends req upstream on the sticky connection (dialling a checked
// address when needed) and copies the response back. It returns the
// upstream to keep and whether the client connection stays open.
func (p *Proxy) forward(ctx context.Context, c net.Conn, br *bufio.Reader, bw *lazyBuf, req *http.Request, f *fwd, ci *connInfo) bool {
	ws := isWebSocket(req)
	key := upKey{scheme: f.scheme, t: f.t.String(), ep: f.ep}
	up := p.getUpstream(key)
	clientClose := req.Close
	stripHop(req.Header, ws)
	if ws {
		req.Header.Set("Connection", "Upgrade")
	}
	path, err := url.PathUnescape(f.escPath)
	if err != nil {
		path = f.escPath
	}
	req.URL = &url.URL{Path: path, RawPath: f.escPath, RawQuery: req.URL.RawQuery}
	applyCredentials(req, f.ep)
	req.Host = hostHeader(f)
	req.Close = false
	if _, ok := req.Header["User-Agent"]; !ok {
		req.Header["User-Agent"] = []string{""} // Request.Write would add Go's
	}
	for attempt := 0; ; attempt++ {
		fresh := up == nil
		if fresh {
			var err error
			if up, err = p.dialUpstream(ctx, f, key); err != nil {
				p.rawUpstreamError(bw, req, ci, f, err)
				return false
			}
		}
		ubw := newLazyBuf(up.conn)
		err := req.Write(ubw)
		if ferr := ubw.Flush(); err == nil {
			err = ferr
		}
		if up.br == nil {
			up.br = getReader(up.conn)
		}
		var resp *http.Response
		if err == nil {
			resp, err = http.ReadResponse(up.br, req)
		}
		if err != nil {
			up.close()
			up = nil
			// A kept-alive upstream may have closed between requests; retry
			// once on a fresh connection when nothing of the body was sent.
			if !fresh && attempt == 0 && (req.Body == nil || req.Body == http.NoBody || req.ContentLength == 0) {
				continue
			}
			p.rawUpstreamError(bw, req, ci, f, err)
			return false
		}
		scrubResponse(resp, f.ep)
		return p.relayResponse(c, br, bw, req, resp, up, ws, clientClose)
	}
}

func (p *Proxy) relayResponse(c net.Conn, br *bufio.Reader, bw *lazyBuf, req *http.Request, resp *http.Response, up *upstream, ws, clientClose bool) bool {
	if ws && resp.StatusCode == http.StatusSwitchingProtocols {
		resp.Body = nil
		if err := resp.Write(bw); err != nil || bw.Flush() != nil {
			up.close()
			return false
		}
		uc := net.Conn(&peekConn{Conn: up.conn, r: up.br})
		cc := net.Conn(&peekConn{Conn: c, r: br})
		_ = c.SetReadDeadline(time.Time{})
		p.spliceConns(cc, uc)
		return false
	}
	upClose := resp.Close
	stripHop(resp.Header, false)
	resp.Close = clientClose
	var w io.Writer = bw
	if resp.ContentLength < 0 {
		w = flushWriter{bw} // streamed (SSE, chunked): pass chunks through at once
	}
	err := resp.Write(w)
	if err == nil {
		err = bw.Flush()
	}
	resp.Body.Close()
	if upClose || err != nil {
		up.close()
	} else {
		p.putUpstream(up)
	}
	return err == nil && !clientClose && !resp.Close
}

type flushWriter struct{ bw *lazyBuf }

// Write implements io.Writer.
func (f flushWriter) Write(b []byte) (int, error) {
	n, err := f.bw.Write(b)
	if err == nil {
		err = f.bw.Flush()
	}
	return n, err
}

func hostHeader(f *fwd) string {
	if (f.scheme == "https" && f.t.port == 443) || (f.scheme == "http" && f.t.port == 80) {
		if f.t.ip.Is6() {
			return "[" + f.t.host + "]"
		}
		return f.t.host
	}
	return f.t.String()
}

// dialUpstream connects to a checked address of f's target and, for https,
// verifies the upstream's certificate against the configured roots.
func (p *Proxy) dialUpstream(ctx context.Context, f *fwd, key upKey) (*upstream, error) {
	conn, err := p.dialChecked(ctx, f.t, f.ep)
	if err != nil {
		return nil, err
	}
	if f.scheme == "https" {
		cfg := &tls.Config{RootCAs: p.cfg.UpstreamRoots, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
		if !f.t.ip.IsValid() {
			cfg.ServerName = f.t.host
		} else {
			cfg.ServerName = f.t.ip.String()
		}
		tc := tls.Client(conn, cfg)
		hctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("tls to %s: %w", f.t, err)
		}
		conn = tc
	}
	return &upstream{key: key, conn: conn}, nil
}

// rawDeny writes the 403 denial and marks the connection for closing.
func (p *Proxy) rawDeny(bw *lazyBuf, req *http.Request, ci *connInfo, t target, v *verdict, path string) {
	writeRaw(bw, v.httpStatus(), "application/json", p.denial(req, ci, t, v, path), true)
}

func (p *Proxy) rawUpstreamError(bw *lazyBuf, req *http.Request, ci *connInfo, f *fwd, err error) {
	var se *ssrfError
	if errors.As(err, &se) {
		cp, _ := Canonicalize(f.escPath, true)
		v := &verdict{action: Deny, reason: se.Error(),
			missing: fmt.Sprintf("allowed_ips covering the address on %s (loopback and private ranges must be named)", se.rule)}
		writeRaw(bw, http.StatusForbidden, "application/json", p.denial(req, ci, f.t, v, cp.String()), true)
		return
	}
	p.log.Debug("egress upstream", "target", f.t.String(), "err", err)
	body := fmt.Sprintf(`{"error":"upstream unreachable","detail":%s}`+"\n", strconv.Quote(fmt.Sprintf("upstream %s: %v", f.t, err)))
	writeRaw(bw, http.StatusBadGateway, "application/json", []byte(body), true)
}

// writeRaw writes a complete small response.
func writeRaw(bw *lazyBuf, status int, ctype string, body []byte, closeConn bool) {
	fmt.Fprintf(bw, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n", status, http.StatusText(status), ctype, len(body))
	if closeConn {
		bw.WriteString("Connection: close\r\n")
	}
	bw.WriteString("\r\n")
	bw.Write(body)
	_ = bw.Flush()
}

// rawConnect decides a CONNECT and then tunnels or inspects.
func (p *Proxy) rawConnect(ctx context.Context, c net.Conn, br *bufio.Reader, bw *lazyBuf, req *http.Request, ci *connInfo) {
	host, port, err := splitHostPort(req.Host, 0)
	if err != nil || port == 0 {
		writeRaw(bw, http.StatusBadRequest, "application/json", []byte(fmt.Sprintf(`{"error":"bad proxy request","detail":%s}`+"\n", strconv.Quote("CONNECT needs host:port, got "+clip(req.Host)))), true)
		return
	}
	t, err := parseTarget(host, port)
	if err != nil {
		p.rawDeny(bw, req, ci, target{host: clip(host), port: port}, &verdict{action: Deny, reason: err.Error(),
			missing: "use the host's DNS name or its canonical dotted-quad address"}, "")
		return
	}
	g := p.gen.Load()
	cands, v := g.candidates(t, ci.peer.get, p.appr.granted())
	if v != nil && v.noEndpoint {
		if p.waitApproval(ctx, t, ci, req.Method, "") {
			g = p.gen.Load()
			cands, v = g.candidates(t, ci.peer.get, p.appr.granted())
		}
	}
	if v != nil {
		p.rawDeny(bw, req, ci, t, v, "")
		return
	}
	established := func() bool {
		_, _ = bw.WriteString("HTTP/1.1 200 Connection established\r\n\r\n")
		return bw.Flush() == nil
	}
	cc := net.Conn(c)
	if br.Buffered() > 0 {
		cc = &peekConn{Conn: c, r: br}
	}
	if needsInspection(cands) {
		p.record(&Event{Class: "Network Activity", Activity: "connect", Decision: Allow, Host: t.host, Port: t.port,
			Rule: "inspect " + cands[0].ruleName(), Gen: g.id}, ci, cands)
		if established() {
			p.serveTunnel(cc, ci, t)
		}
		return
	}
	var (
		upc  net.Conn
		last error
		used *endpoint
	)
	for _, e := range cands {
		if upc, last = p.dialChecked(ctx, t, e); last == nil {
			used = e
			break
		}
	}
	if upc == nil {
		var se *ssrfError
		if errors.As(last, &se) {
			p.rawDeny(bw, req, ci, t, &verdict{action: Deny, reason: se.Error(),
				missing: fmt.Sprintf("allowed_ips covering the address on %s (loopback and private ranges must be named)", se.rule)}, "")
			return
		}
		writeRaw(bw, http.StatusBadGateway, "application/json", []byte(fmt.Sprintf(`{"error":"upstream unreachable","detail":%s}`+"\n", strconv.Quote(fmt.Sprintf("connect %s: %v", t, last)))), true)
		return
	}
	p.record(&Event{Class: "Network Activity", Activity: "connect", Decision: Allow, Host: t.host, Port: t.port,
		Rule: used.ruleName(), Gen: g.id}, ci, cands)
	if !established() {
		upc.Close()
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	p.spliceConns(cc, upc)
}

const (
	upIdleMax     = 512
	upIdleTimeout = 90 * time.Second
)

// getUpstream takes the most recently used idle connection for key.
func (p *Proxy) getUpstream(key upKey) *upstream {
	p.upMu.Lock()
	defer p.upMu.Unlock()
	list := p.upIdle[key]
	for len(list) > 0 {
		u := list[len(list)-1]
		list = list[:len(list)-1]
		if time.Since(u.idle) < upIdleTimeout {
			p.upIdle[key] = list
			return u
		}
		u.close()
	}
	delete(p.upIdle, key)
	return nil
}

// putUpstream returns a connection whose response was fully read.
func (p *Proxy) putUpstream(u *upstream) {
	u.idle = time.Now()
	if u.br != nil && u.br.Buffered() == 0 {
		putReader(u.br) // idle connections hold no buffers
		u.br = nil
	}
	p.upMu.Lock()
	defer p.upMu.Unlock()
	if p.upIdle == nil || len(p.upIdle[u.key]) >= upIdleMax {
		u.close()
		return
	}
	p.upIdle[u.key] = append(p.upIdle[u.key], u)
}

// closeUpstreams closes every idle upstream connection.
func (p *Proxy) closeUpstreams() {
	p.upMu.Lock()
	idle := p.upIdle
	p.upIdle = nil
	p.upMu.Unlock()
	for _, l := range idle {
		for _, u := range l {
			u.close()
		}
	}
}
