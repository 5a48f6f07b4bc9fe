package egress

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"time"
)

// InferenceAddr is the address inference.local resolves to inside a
// sandbox: on the netns's loopback, where the sandbox creates the
// listeners (ports 80 and 443) that ServeInference serves. Not 127.0.0.1,
// so that the agent's own services on 127.0.0.1:80 or :443 are left alone.
var InferenceAddr = netip.MustParseAddr("127.0.0.2")

// inferencePort reports whether port is one inference.local is served on.
func inferencePort(port int) bool { return port == 80 || port == 443 }

// inferenceRefusal is the verdict for an inference.local request the
// router will not see.
func (p *Proxy) inferenceRefusal(t target) *verdict {
	if p.cfg.Inference == nil {
		return inferenceVerdict(t)
	}
	return &verdict{action: Deny, reason: fmt.Sprintf("%s: inference.local is served on ports 80 (http) and 443 (https) only", t),
		missing: "http://inference.local or https://inference.local", steps: "call http://inference.local/v1 or https://inference.local/v1"}
}

// serveInference hands one request for inference.local to the router.
func (p *Proxy) serveInference(w http.ResponseWriter, r *http.Request) {
	r.Header.Del("Proxy-Authorization")
	r.Header.Del("Proxy-Connection")
	p.cfg.Inference.ServeHTTP(w, r)
}

// connectInference answers a CONNECT to inference.local: the tunnel is
// terminated here (TLS with a leaf from the sandbox CA, or plain HTTP) and
// its requests go to the router.
func (p *Proxy) connectInference(w http.ResponseWriter, r *http.Request, ci *connInfo, t target) {
	if !inferencePort(t.port) || p.cfg.Inference == nil {
		p.denyRequest(w, r, ci, t, p.inferenceRefusal(t), "")
		return
	}
	p.audit.record(&Event{Class: "Network Activity", Activity: "connect", Decision: Allow, Host: t.host, Port: t.port,
		Rule: "inference.local (served by the supervisor's router)", Gen: p.Generation()})
	if c := p.established(w, ci); c != nil {
		p.serveTunnel(c, ci, t)
	}
}

// ServeInference serves inference.local on l, a listener on InferenceAddr
// inside the sandbox's netns (port 443 with TLS from the sandbox CA when
// useTLS, else port 80), for clients that ignore the proxy variables. With
// no router configured it answers 503, as the proxy does.
func (p *Proxy) ServeInference(l net.Listener, useTLS bool) error {
	if !p.addCloser(l) {
		return nil
	}
	var h http.Handler = http.HandlerFunc(p.serveInference)
	if p.cfg.Inference == nil {
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			port := 80
			if useTLS {
				port = 443
			}
			v := inferenceVerdict(target{host: inferenceHost, port: port})
			ci := &connInfo{peer: &peerCache{}}
			p.denyRequest(w, r, ci, target{host: inferenceHost, port: port}, v, "")
		})
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: p.lim.readHeaderTimeout, IdleTimeout: p.lim.idleTimeout, MaxHeaderBytes: p.lim.maxHeaderBytes}
	if !p.addCloser(closerFunc(srv.Close)) {
		return nil
	}
	var err error
	if useTLS {
		srv.TLSConfig = &tls.Config{
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
				a, err := p.ca.authority()
				if err != nil {
					return nil, err
				}
				return a.leaf(inferenceHost)
			},
			NextProtos: []string{"h2", "http/1.1"},
			MinVersion: tls.VersionTLS12,
		}
		err = srv.ServeTLS(l, "", "")
	} else {
		err = srv.Serve(l)
	}
	if errors.Is(err, http.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("egress: serve inference.local: %w", err)
	}
	return nil
}

// InferenceEvent is one inference call as the audit log records it: never
// a prompt, a body or a key.
type InferenceEvent struct {
	Route, Plugin, Model, Method, Path, Error string
	Status                                    int
	Stream                                    bool
	PromptTokens, CompletionTokens            int64
	Latency, TTFB                             time.Duration
}

// AuditInference writes one inference call to the sandbox's audit log
// (class "Inference Activity").
func (p *Proxy) AuditInference(e InferenceEvent) {
	act := "request"
	if e.Stream {
		act = "stream"
	}
	dec := Allow
	if e.Error != "" || e.Status >= 400 {
		dec = Deny
	}
	p.audit.record(&Event{Class: "Inference Activity", Activity: act, Decision: dec, Host: inferenceHost,
		Method: e.Method, Path: e.Path, Rule: e.Route, Reason: clip(e.Error), Status: e.Status, Gen: p.Generation(),
		Model: clip(e.Model), Plugin: e.Plugin, PromptTokens: e.PromptTokens, CompletionTokens: e.CompletionTokens,
		LatencyUs: e.Latency.Microseconds(), TTFBUs: e.TTFB.Microseconds()})
}
