package egress

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http2"
)

// ServeHTTP is the proxy's request entry point, for HTTP/1.1 requests on
// the proxy listener (CONNECT, absolute-form) and for HTTP/1.1 and h2
// requests read from an intercepted tunnel.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ci, _ := r.Context().Value(connKey).(*connInfo)
	if ci == nil {
		http.Error(w, "no connection context", http.StatusInternalServerError)
		return
	}
	ci.pending.Store(false)
	if ci.tunnel != nil {
		// The tunnel's target decides where we connect; a Host header that
		// names another host would make the policy judge one host and the
		// upstream serve another.
		if !hostMatchesTunnel(r.Host, *ci.tunnel) {
			p.denyRequest(w, r, ci, *ci.tunnel, &verdict{action: Deny,
				reason:  fmt.Sprintf("Host header %q does not match the CONNECT target %s", clip(r.Host), ci.tunnel),
				missing: "send requests for the host the tunnel was opened to"}, "")
			return
		}
		if ci.tunnel.host == inferenceHost {
			p.serveInference(w, r) // connectInference opened it
			return
		}
		p.handleRequest(w, r, ci, *ci.tunnel, ci.scheme)
		return
	}
	switch {
	case r.Method == http.MethodConnect:
		p.serveConnect(w, r, ci)
	case r.URL.IsAbs() && r.URL.Scheme == "http" && r.URL.Host != "":
		host, port, err := splitHostPort(r.URL.Host, 80)
		if err != nil {
			p.badRequest(w, r, ci, "bad request target "+clip(r.URL.Host))
			return
		}
		t, err := parseTarget(host, port)
		if err != nil {
			p.denyRequest(w, r, ci, target{host: clip(host), port: port}, &verdict{action: Deny, reason: err.Error(),
				missing: "use the host's DNS name or its canonical dotted-quad address"}, "")
			return
		}
		if t.host == inferenceHost && p.cfg.Inference != nil {
			if !inferencePort(t.port) {
				p.denyRequest(w, r, ci, t, p.inferenceRefusal(t), "")
				return
			}
			p.serveInference(w, r)
			return
		}
		p.handleRequest(w, r, ci, t, "http")
		p.untrackHijacked(ci.cc)
	case r.URL.IsAbs():
		p.badRequest(w, r, ci, fmt.Sprintf("scheme %q cannot be forwarded; use CONNECT for https and wss", clip(r.URL.Scheme)))
	default:
		p.badRequest(w, r, ci, "this is nemoclaw's egress proxy: send proxy requests (set HTTP_PROXY/HTTPS_PROXY), not origin requests")
	}
}

func hostMatchesTunnel(h string, t target) bool {
	hh, hp, err := splitHostPort(h, t.port)
	if err != nil || hp != t.port {
		return false
	}
	if strings.EqualFold(strings.TrimSuffix(strings.Trim(hh, "[]"), "."), t.host) {
		return true
	}
	ht, err := parseTarget(hh, hp)
	return err == nil && ht.host == t.host
}

// badRequest answers 400 with a JSON body, closes the connection and
// records the refusal.
func (p *Proxy) badRequest(w http.ResponseWriter, r *http.Request, ci *connInfo, msg string) {
	p.auditRefused(ci, http.StatusBadRequest, msg)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Connection", "close")
	w.WriteHeader(http.StatusBadRequest)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": "bad proxy request", "detail": msg})
}

// spliceConns copies bytes both ways until both sides are done.
func (p *Proxy) spliceConns(a, b net.Conn) {
	var wg sync.WaitGroup
	wg.Add(2)
	cp := func(dst, src net.Conn) {
		defer wg.Done()
		_, _ = io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		} else {
			_ = dst.Close()
		}
	}
	go cp(a, b)
	go cp(b, a)
	wg.Wait()
	a.Close()
	b.Close()
}

// serveTunnel reads the first byte of an inspected tunnel: a TLS handshake
// is terminated with a leaf from the sandbox CA (h2 offered via ALPN),
// anything else is served as plain HTTP.
func (p *Proxy) serveTunnel(c net.Conn, outer *connInfo, t target) {
	br := bufio.NewReaderSize(c, 4096)
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	first, err := br.Peek(1)
	if err != nil {
		c.Close()
		return
	}
	pc := &peekConn{Conn: c, r: br}
	ci := &connInfo{client: outer.client, tunnel: &t, scheme: "http", peer: outer.peer, cc: outer.cc}
	if first[0] != 0x16 {
		_ = c.SetReadDeadline(time.Time{})
		p.serveTunnelH1(pc, ci)
		return
	}
	tc := tls.Server(pc, &tls.Config{
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			a, err := p.ca.authority()
			if err != nil {
				return nil, err
			}
			return a.leaf(t.host)
		},
		NextProtos: []string{"h2", "http/1.1"},
		MinVersion: tls.VersionTLS12,
	})
	if err := tc.Handshake(); err != nil {
		p.log.Debug("egress tls handshake", "host", t.host, "err", err)
		c.Close()
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	ci.scheme = "https"
	if tc.ConnectionState().NegotiatedProtocol == "h2" {
		ctx := context.WithValue(context.Background(), connKey, ci)
		// A copy per tunnel, so that stream and connection errors (which
		// never reach the handler) are audited against this tunnel.
		h2 := *p.h2
		h2.CountError = func(errType string) {
			p.auditRefused(ci, 0, "h2 stream or connection error ("+errType+"); the proxy reset it")
		}
		h2.ServeConn(tc, &http2.ServeConnOpts{Context: ctx, Handler: p, BaseConfig: p.inner})
		tc.Close()
		return
	}
	p.serveTunnelH1(tc, ci)
}

// fwd is what the reverse proxy needs to forward one allowed request.
type fwd struct {
	t       target
	ep      *endpoint
	scheme  string
	escPath string
}

// handleRequest evaluates one HTTP request (HTTP/1.1 or h2) and forwards
// it when allowed.
func (p *Proxy) handleRequest(w http.ResponseWriter, r *http.Request, ci *connInfo, t target, scheme string) {
	f, v, path := p.evalRequest(r.Context(), r, ci, t, scheme)
	if v != nil {
		p.denyRequest(w, r, ci, t, v, path)
		return
	}
	p.rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), fwdKey, f)))
	// Trailers are never inspected, so none are passed on: the server
	// sends those left in the header map under TrailerPrefix when this
	// handler returns (modifyResponse keeps them from being announced).
	for k := range w.Header() {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			delete(w.Header(), k)
		}
	}
}

// modifyResponse drops the upstream's trailers (see handleRequest) and
// scrubs the bound secrets from what comes back (scrubResponse).
func modifyResponse(res *http.Response) error {
	res.Trailer = nil
	if f, ok := res.Request.Context().Value(fwdKey).(*fwd); ok {
		scrubResponse(res, f.ep)
	}
	return nil
}

// evalRequest decides one HTTP request against the current generation. On
// allow it returns the forwarding plan (placeholders checked, allow audited;
// the secrets go in later, on the outgoing request: applyCredentials); on
// deny the verdict and the canonical path for the denial.
func (p *Proxy) evalRequest(ctx context.Context, r *http.Request, ci *connInfo, t target, scheme string) (*fwd, *verdict, string) {
	g := p.gen.Load()
	cands, v := g.candidates(t, ci.peer.get, p.appr.granted())
	if v != nil && v.noEndpoint {
		if p.waitApproval(ctx, t, ci, r.Method, requestPath(r)) {
			g = p.gen.Load()
			cands, v = g.candidates(t, ci.peer.get, p.appr.granted())
		}
	}
	if v != nil {
		return nil, v, ""
	}
	slash := false
	for _, e := range cands {
		slash = slash || e.ep.AllowEncodedSlash
	}
	cp, err := Canonicalize(requestPath(r), slash)
	if err != nil {
		return nil, &verdict{action: Deny, reason: err.Error(), missing: "send the path in plain canonical form"}, ""
	}
	ri, qv := requestInfo(r, cp, cands)
	if qv != nil {
		return nil, qv, cp.String()
	}
	v2 := decideRequest(cands, ri)
	if v2.action == Deny {
		return nil, &v2, cp.String()
	}
	if cv := checkCredentials(r, cp, v2.ep, g.creds, t, scheme); cv != nil {
		return nil, cv, cp.String()
	}
	esc := cp.Escaped
	act := "request"
	if ri.websocket {
		act = "upgrade"
	}
	p.record(&Event{Class: "HTTP Activity", Activity: act, Decision: v2.action, Host: t.host, Port: t.port,
		Method: r.Method, Path: cp.String(), Rule: v2.rule, Reason: v2.reason, Gen: g.id}, ci, cands)
	return &fwd{t: t, ep: v2.ep, scheme: scheme, escPath: esc}, nil, ""
}

// requestPath is the raw path as the client sent it, without the query.
func requestPath(r *http.Request) string {
	u := r.RequestURI
	if u == "" {
		return r.URL.EscapedPath()
	}
	if !strings.HasPrefix(u, "/") {
		if i := strings.Index(u, "://"); i >= 0 {
			u = u[i+3:]
			if j := strings.IndexByte(u, '/'); j >= 0 {
				u = u[j:]
			} else if j := strings.IndexByte(u, '?'); j >= 0 {
				u = "/" + u[j:]
			} else {
				u = "/"
			}
		}
	}
	if i := strings.IndexByte(u, '?'); i >= 0 {
		u = u[:i]
	}
	if i := strings.IndexByte(u, '#'); i >= 0 {
		u = u[:i]
	}
	return u
}

func isWebSocket(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}

// rewrite points the outgoing request at the checked target with the
// canonical path.
func rewrite(pr *httputil.ProxyRequest) {
	f := pr.In.Context().Value(fwdKey).(*fwd)
	path, err := url.PathUnescape(f.escPath)
	if err != nil {
		path = f.escPath
	}
	hostport := f.t.String()
	pr.Out.URL = &url.URL{Scheme: f.scheme, Host: hostport, Path: path, RawPath: f.escPath, RawQuery: pr.In.URL.RawQuery}
	if (f.scheme == "https" && f.t.port == 443) || (f.scheme == "http" && f.t.port == 80) {
		pr.Out.Host = f.t.host
		if f.t.ip.Is6() {
			pr.Out.Host = "[" + f.t.host + "]"
		}
	} else {
		pr.Out.Host = hostport
	}
	// Keep the client's own identity headers out of upstream requests.
	pr.Out.Header.Del("Forwarded")
	pr.Out.Header.Del("X-Forwarded-For")
	pr.Out.Header["User-Agent"] = pr.In.Header["User-Agent"]
	// Request trailers are never inspected: none are sent upstream.
	pr.Out.Trailer = nil
	applyCredentials(pr.Out, f.ep)
}

// dialForward is the transport's dialer: only addresses checked against the
// endpoint that allowed the request are dialled.
func (p *Proxy) dialForward(ctx context.Context, network, addr string) (net.Conn, error) {
	f, ok := ctx.Value(fwdKey).(*fwd)
	if !ok || f.ep == nil {
		return nil, fmt.Errorf("dial %s: no policy decision attached", addr)
	}
	return p.dialChecked(ctx, f.t, f.ep)
}

// upstreamError turns forwarding failures into 403 (SSRF) or 502.
func (p *Proxy) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	f, _ := r.Context().Value(fwdKey).(*fwd)
	ci, _ := r.Context().Value(connKey).(*connInfo)
	var se *ssrfError
	if errors.As(err, &se) && f != nil && ci != nil {
		cp, _ := Canonicalize(requestPath(r), true)
		p.denyRequest(w, r, ci, f.t, &verdict{action: Deny, reason: se.Error(),
			missing: fmt.Sprintf("allowed_ips covering the address on %s (loopback and private ranges must be named)", se.rule)}, cp.String())
		return
	}
	if errors.Is(err, context.Canceled) {
		if f != nil && ci != nil {
			p.audit.record(&Event{Class: "HTTP Activity", Activity: "request", Decision: Allow, Host: f.t.host, Port: f.t.port,
				Method: r.Method, Reason: "the client cancelled the request (closed or reset) before the response", Gen: p.Generation()})
		}
		return
	}
	target := ""
	if f != nil {
		target = f.t.String()
	}
	p.log.Debug("egress upstream", "target", target, "err", err)
	msg := fmt.Sprintf("upstream %s: %v", target, err)
	// net/http's Transport exports no error type for its response-head
	// limit, only this text (h1Pool returns the same text on purpose, so
	// the two upstream paths answer alike: TestH1PoolMatchesTransport).
	if strings.Contains(err.Error(), "server response headers exceeded") {
		msg = fmt.Sprintf("upstream %s sent response headers over %d bytes, the proxy's limit; the response was dropped", target, p.lim.maxRespHeaderBytes)
	}
	p.gatewayError(w, msg)
}

func (p *Proxy) gatewayError(w http.ResponseWriter, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadGateway)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": "upstream unreachable", "detail": msg})
}

// Denial is the JSON body of every 403 the proxy sends.
type Denial struct {
	Error       string `json:"error"`
	Detail      string `json:"detail"`
	Host        string `json:"host"`
	Port        int    `json:"port"`
	Method      string `json:"method"`
	Path        string `json:"path,omitempty"`
	Binary      string `json:"binary,omitempty"`
	RuleMissing string `json:"rule_missing"`
	NextSteps   string `json:"next_steps"`
}

// denyRequest answers 403 with the JSON denial and records it.
func (p *Proxy) denyRequest(w http.ResponseWriter, r *http.Request, ci *connInfo, t target, v *verdict, path string) {
	body := p.denial(r, ci, t, v, path)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Header().Set("Connection", "close")
	w.WriteHeader(v.httpStatus())
	_, _ = w.Write(body)
}

// denial records a denial and returns the JSON body of its 403.
func (p *Proxy) denial(r *http.Request, ci *connInfo, t target, v *verdict, path string) []byte {
	pi := ci.peer.get()
	d := Denial{Error: v.errorText(), Detail: v.reason, Host: t.host, Port: t.port,
		Method: r.Method, Path: path, RuleMissing: v.missing, NextSteps: p.nextSteps(v)}
	ev := &Event{Class: "HTTP Activity", Activity: "request", Decision: Deny, Host: t.host, Port: t.port,
		Method: r.Method, Path: path, Rule: v.rule, Reason: v.reason, Status: v.httpStatus(), Gen: p.Generation()}
	if r.Method == http.MethodConnect {
		ev.Class, ev.Activity = "Network Activity", "connect"
	}
	if pi != nil {
		d.Binary, ev.Binary, ev.Pid = pi.exe, pi.exe, pi.pid
	}
	p.audit.record(ev)
	body, _ := json.Marshal(d)
	return append(body, '\n')
}

func (p *Proxy) nextSteps(v *verdict) string {
	sb := p.cfg.Sandbox
	if sb == "" {
		sb = "<sandbox>"
	}
	if v.steps != "" {
		return v.steps
	}
	s := fmt.Sprintf("add %s to the policy and run `nemoclaw policy set %s FILE` (or `nemoclaw policy add %s PRESET`)", v.missing, sb, sb)
	if v.noEndpoint {
		s += fmt.Sprintf("; or approve it with `nemoclaw policy approvals %s` and retry", sb)
	}
	return s
}

// record writes an allow decision, naming the binary only when some
// candidate is binary-scoped (looking it up costs a /proc scan).
func (p *Proxy) record(ev *Event, ci *connInfo, cands []*endpoint) {
	for _, e := range cands {
		if len(e.binaries) > 0 {
			if pi := ci.peer.get(); pi != nil {
				ev.Binary, ev.Pid = pi.exe, pi.pid
			}
			break
		}
	}
	p.audit.record(ev)
}
