// Package egress is the sandbox's egress policy proxy: every network byte an
// agent sends leaves through it or not at all.
//
// The sandbox's network namespace has only a loopback interface; the proxy
// serves listeners created inside it (127.0.0.1:3128 for HTTP proxying,
// 127.0.0.1:53 for DNS) from the supervisor. It speaks HTTP CONNECT and
// absolute-form forward proxying, terminates TLS with a per-sandbox CA when
// an endpoint has L7 rules (HTTP/1.1 and h2 via ALPN), passes WebSocket
// upgrades, and decides each connection and each request against the
// sandbox's network policy: host patterns, ports, protocol, binaries
// (advisory), method/path/query rules, deny rules, SSRF guards. Decisions are
// written one JSON line each to an audit log; denials can wait for an
// operator's approval; the policy can be replaced while the sandbox runs.
package egress

import (
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"os"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/time/rate"

	"github.com/nemoclaw/nemoclaw/runner/policy"
)

// Config configures a Proxy.
type Config struct {
	// Sandbox names the sandbox in audit records and denial hints.
	Sandbox string
	// Policy is the sandbox policy; its network_policies are enforced and its
	// static sections (filesystem, landlock, process, resources) are locked.
	Policy *policy.Policy
	// Logger receives operator logs (first denial per host:port:binary, warnings).
	Logger *slog.Logger
	// AuditLog receives one JSON line per decision; nil disables the file.
	AuditLog io.Writer
	// AuditMaxBytes caps what is written to AuditLog (default
	// DefaultAuditMaxBytes); later decisions are only counted.
	AuditMaxBytes int64
	// UpstreamRoots verifies upstream TLS; nil means the system roots. Tests
	// add their own CA here; production never does.
	UpstreamRoots *x509.CertPool
	// Resolver resolves upstream names; nil means net.DefaultResolver.
	Resolver Resolver
	// NetnsPid is a process inside the sandbox's network and pid namespaces,
	// used to map a client socket to the program that owns it; 0 means this
	// process's own namespaces.
	NetnsPid int
	// Approvals makes a request to a host:port no policy covers wait for an
	// operator's decision instead of failing at once. Either way the
	// destination is listed for approval, so an approval lets the next
	// attempt through.
	Approvals bool
	// ApprovalTimeout bounds that wait (default 2 minutes).
	ApprovalTimeout time.Duration
	// ApprovalsFile stores approvals saved with --save (JSON); they are
	// loaded when the proxy starts.
	ApprovalsFile string
	// LookupEnv reads the host environment for credential secrets (default
	// os.LookupEnv).
	LookupEnv func(string) (string, bool)
	// Inference serves inference.local (the sandbox's inference router):
	// requests through the proxy (http, and https via CONNECT terminated
	// with the sandbox CA) and on the InferenceAddr listeners
	// (ServeInference). nil: answered 503, no router is running.
	Inference http.Handler
	// CA is the interception CA (from NewCA or StartCA, which New does not
	// wait for); nil: New creates one.
	CA *CA

	// OnModelRefusal, if set, receives one line per refused call to
	// inference.local (rate-limited per call; the same line is logged at
	// error level): the supervisor copies it into the agent's log, where
	// the agent itself shows only "connection error".
	OnModelRefusal func(line string)

	// limits overrides defaultLimits (tests shrink them).
	limits *httpLimits
}

// The DNS listener's per-sandbox rate: a package manager resolving a few
// hundred names at once fits in the burst.
const (
	dnsRate  = 200
	dnsBurst = 1000
)

// Proxy is one sandbox's egress proxy. Create it with New, serve listeners
// with Serve and ServeDNS, and Close it when the sandbox ends.
type Proxy struct {
	cfg      Config
	log      *slog.Logger
	gen      atomic.Pointer[generation]
	genSeq   atomic.Uint64
	reloadMu sync.Mutex
	ca       *CA // possibly still being made (StartCA)
	phKey    [32]byte
	resolver Resolver
	dialer   *net.Dialer
	lim      httpLimits
	trs      transports
	rp       *httputil.ReverseProxy
	audit    *auditor
	appr     *approvals

	// srv serves the proxy listener; inner serves HTTP/1.1 inside
	// intercepted tunnels; h2 serves h2 inside them.
	srv   *http.Server
	inner *http.Server
	h2    *http2.Server

	nsPid atomic.Int64

	// dnsLimit bounds the DNS queries a sandbox may make (each may cost a
	// host lookup and an audit line).
	dnsLimit *rate.Limiter

	// peerSem bounds concurrent peer lookups (see peerCache).
	peerSem chan struct{}

	mu sync.Mutex
	// conns holds every client connection accepted on the proxy listener,
	// served or hijacked (tunnels), until it closes; idle counts those
	// waiting between requests.
	conns map[net.Conn]*clientConn
	idle  int
	// closed: by Close or Finish, nothing more is accepted; socketsClosed:
	// by Close, the listeners and connections are closed too.
	closed, socketsClosed bool
	closers               []io.Closer
}

// New validates cfg.Policy and builds a proxy with a fresh CA. Nothing is
// listened on until Serve.
func New(cfg Config) (*Proxy, error) {
	if cfg.Policy == nil {
		return nil, errors.New("egress: Config.Policy is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ApprovalTimeout <= 0 {
		cfg.ApprovalTimeout = 2 * time.Minute
	}
	if cfg.LookupEnv == nil {
		cfg.LookupEnv = os.LookupEnv
	}
	p := &Proxy{cfg: cfg, log: cfg.Logger, resolver: cfg.Resolver, conns: map[net.Conn]*clientConn{}, peerSem: make(chan struct{}, 2)}
	if p.resolver == nil {
		p.resolver = net.DefaultResolver
	}
	if _, err := rand.Read(p.phKey[:]); err != nil {
		return nil, fmt.Errorf("egress: placeholder key: %w", err)
	}
	p.ca = cfg.CA
	if p.ca == nil {
		ca, err := NewCA(cfg.Sandbox)
		if err != nil {
			return nil, err
		}
		p.ca = ca
	}
	p.nsPid.Store(int64(cfg.NetnsPid))
	p.dnsLimit = rate.NewLimiter(dnsRate, dnsBurst)
	g, err := compile(cfg.Policy, p)
	if err != nil {
		return nil, fmt.Errorf("egress: policy: %w", err)
	}
	g.id = p.genSeq.Add(1)
	for _, w := range g.warnings {
		p.log.Warn("egress policy", "warning", w)
	}
	p.gen.Store(g)
	p.audit = newAuditor(cfg.AuditLog, p.log, cfg.Sandbox, cfg.AuditMaxBytes)
	p.audit.models.hook = cfg.OnModelRefusal
	p.appr = newApprovals(p)
	if err := p.appr.load(); err != nil {
		return nil, fmt.Errorf("egress: %w", err)
	}

	// No MPTCP: Landlock's TCP rules do not cover it, and there is no need.
	p.dialer = &net.Dialer{Timeout: 15 * time.Second, KeepAlive: 30 * time.Second}
	p.dialer.SetMultipathTCP(false)
	p.lim = defaultLimits
	if cfg.limits != nil {
		p.lim = *cfg.limits
	}
	p.trs = transports{p: p, m: map[string]*upstream{}}
	p.rp = &httputil.ReverseProxy{
		Rewrite:        rewrite,
		Transport:      &p.trs,
		BufferPool:     bufPool{},
		ModifyResponse: modifyResponse,
		ErrorHandler:   p.upstreamError,
		ErrorLog:       slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
	}
	p.srv, p.inner = p.newServer(false), p.newServer(true)
	p.h2 = &http2.Server{IdleTimeout: p.lim.idleTimeout, MaxConcurrentStreams: 100}
	return p, nil
}

// CACertPEM is the per-sandbox CA certificate (PEM) that the sandbox must
// trust. The key never leaves this process.
func (p *Proxy) CACertPEM() ([]byte, error) { return p.ca.CertPEM() }

// systemBundles are where distributions keep the system CA bundle.
var systemBundles = []string{
	"/etc/ssl/certs/ca-certificates.crt",
	"/etc/pki/tls/certs/ca-bundle.crt",
	"/etc/ssl/ca-bundle.pem",
	"/etc/ssl/cert.pem",
}

// SystemCABundle is the path of the host's CA bundle ("" when it has none
// of the usual ones). A sandbox's bundle file is it followed by CACertPEM,
// assembled inside the sandbox (sandbox.File.From) so that the launcher
// never copies the host's ~200 KB bundle.
func SystemCABundle() string {
	for _, f := range systemBundles {
		if fi, err := os.Stat(f); err == nil && fi.Mode().IsRegular() {
			return f
		}
	}
	return ""
}

// Env is the environment a sandboxed program needs to use the proxy:
// proxy variables in both cases, NO_PROXY for loopback (see noProxy), the CA bundle for
// every common TLS stack, and one variable per credential placeholder.
func (p *Proxy) Env(proxyURL, bundlePath, caPath string) []string {
	env := []string{}
	for _, k := range []string{"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"} {
		env = append(env, k+"="+proxyURL)
	}
	noProxy := p.gen.Load().noProxy()
	env = append(env,
		"NO_PROXY="+noProxy, "no_proxy="+noProxy,
		"NODE_USE_ENV_PROXY=1",
		"SSL_CERT_FILE="+bundlePath, "REQUESTS_CA_BUNDLE="+bundlePath,
		"CURL_CA_BUNDLE="+bundlePath, "GIT_SSL_CAINFO="+bundlePath,
		"NODE_EXTRA_CA_CERTS="+caPath,
	)
	seen := map[string]bool{}
	for _, c := range p.gen.Load().creds {
		if !seen[c.name] {
			seen[c.name] = true
			env = append(env, c.name+"="+c.placeholder)
		}
	}
	return env
}

// Policy returns the network policy in force now.
func (p *Proxy) Policy() *policy.Policy { return p.gen.Load().pol }

// Generation is the number of the policy generation in force (1 at start,
// +1 per successful reload).
func (p *Proxy) Generation() uint64 { return p.gen.Load().id }

// Reload replaces the network policy atomically. The whole new policy is
// validated first; on any error the running generation stays. Static
// sections may be omitted, or repeated unchanged; changing them is refused.
func (p *Proxy) Reload(np *policy.Policy) error {
	if np == nil {
		return errors.New("reload: no policy")
	}
	p.reloadMu.Lock()
	defer p.reloadMu.Unlock()
	old := p.cfg.Policy
	for _, f := range []struct {
		name     string
		new, old any
		isNil    bool
	}{
		{"filesystem_policy", np.Filesystem, old.Filesystem, np.Filesystem == nil},
		{"landlock", np.Landlock, old.Landlock, np.Landlock == nil},
		{"process", np.Process, old.Process, np.Process == nil},
		{"resources", np.Resources, old.Resources, np.Resources == nil},
	} {
		if !f.isNil && !reflect.DeepEqual(f.new, f.old) {
			return fmt.Errorf("reload: %s is locked when the sandbox starts and cannot change live; remove it from the new policy or restart the sandbox with it", f.name)
		}
	}
	merged := *np
	merged.Filesystem, merged.Landlock, merged.Process, merged.Resources = old.Filesystem, old.Landlock, old.Process, old.Resources
	g, err := compile(&merged, p)
	if err != nil {
		return fmt.Errorf("reload: %w (generation %d stays in force)", err, p.Generation())
	}
	g.id = p.genSeq.Add(1)
	for _, w := range g.warnings {
		p.log.Warn("egress policy", "warning", w)
	}
	p.gen.Store(g)
	p.trs.retain(g)
	p.log.Info("egress policy reloaded", "generation", g.id, "groups", len(np.NetworkPolicies))
	return nil
}

// AddPreset merges a preset's network policies into the running policy
// (the preset wins on a key collision) and reloads.
func (p *Proxy) AddPreset(pr *policy.Preset) error {
	if pr == nil || len(pr.NetworkPolicies) == 0 {
		return errors.New("add preset: the preset has no network_policies")
	}
	cur := p.Policy()
	np := *cur
	np.NetworkPolicies = make(map[string]*policy.NetworkPolicy, len(cur.NetworkPolicies)+len(pr.NetworkPolicies))
	for k, v := range cur.NetworkPolicies {
		np.NetworkPolicies[k] = v
	}
	for k, v := range pr.NetworkPolicies {
		np.NetworkPolicies[k] = v
	}
	if err := p.Reload(&np); err != nil {
		return fmt.Errorf("add preset %s: %w", pr.Meta.Name, err)
	}
	return nil
}

// SetNetnsPid names a process inside the sandbox's network and pid
// namespaces (the sandbox init), once it exists, for peer→binary lookups.
func (p *Proxy) SetNetnsPid(pid int) { p.nsPid.Store(int64(pid)) }

// Summaries returns the deduplicated decision counts per (host, port, binary).
func (p *Proxy) Summaries() []Summary { return p.audit.summaries() }

// FlushAudit writes buffered audit lines now.
func (p *Proxy) FlushAudit() { p.audit.flush() }

// Serve answers proxy connections on l until l is closed or Close is
// called. l is normally the sandbox's 127.0.0.1:3128 listener.
func (p *Proxy) Serve(l net.Listener) error {
	if !p.addCloser(l) {
		return nil
	}
	err := p.srv.Serve(l)
	if errors.Is(err, http.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("egress: serve: %w", err)
	}
	return nil
}

// Close stops serving, closes every connection, and writes the audit
// summaries.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.socketsClosed {
		p.mu.Unlock()
		return nil
	}
	finished := p.closed // by Finish: only the sockets are left
	p.closed, p.socketsClosed = true, true
	conns := p.conns
	p.conns = nil
	closers := p.closers
	p.closers = nil
	p.mu.Unlock()
	err := errors.Join(p.srv.Close(), p.inner.Close())
	for c := range conns {
		_ = c.Close()
	}
	for _, c := range closers {
		_ = c.Close()
	}
	p.trs.closeIdle()
	if !finished {
		p.appr.close()
		p.audit.close()
	}
	return err
}

// Finish is Close for a process that exits next. It ends pending approvals
// and writes the audit summaries as Close does, and accepts nothing more,
// but leaves the listeners, connections and DNS servers open for the exit
// to close: Close wakes every goroutine serving them and waits for each,
// 0.1-0.3 ms at the end of every `nemoclaw sandbox run`. A Close after
// Finish closes them.
func (p *Proxy) Finish() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	p.appr.close()
	p.audit.close()
	return nil
}

// addCloser registers c for Close to close; it closes c and returns false
// when the proxy is closed (or finished) already.
func (p *Proxy) addCloser(c io.Closer) bool {
	p.mu.Lock()
	if p.closed {
		// Closed before this serving goroutine began: nothing else
		// would close c, and it would be served forever.
		p.mu.Unlock()
		_ = c.Close()
		return false
	}
	p.closers = append(p.closers, c)
	p.mu.Unlock()
	return true
}

// connInfo describes the client connection a request arrived on.
type connInfo struct {
	client netip.AddrPort
	// tunnel is the CONNECT target when the request came through an
	// intercepted tunnel; nil on the proxy's own listener.
	tunnel *target
	scheme string
	peer   *peerCache
	// cc is the accepted connection this one rides on (itself, or the
	// CONNECT that opened the tunnel).
	cc *clientConn
	// pending: a request head was started on this connection and has not
	// reached the handler (so a refusal by the server is audited).
	pending atomic.Bool
}

// peerCache resolves the client's program once per connection, lazily.
type peerCache struct {
	once  sync.Once
	nsPid int
	addr  netip.AddrPort
	info  *peerInfo
	// sem bounds the lookups running at once across the proxy's
	// connections (each one is bounded by peerScanBudget).
	sem chan struct{}
}

func (c *peerCache) get() *peerInfo {
	c.once.Do(func() {
		if c.sem != nil {
			c.sem <- struct{}{}
			defer func() { <-c.sem }()
		}
		pi, err := lookupPeer(c.nsPid, c.addr)
		if err == nil {
			c.info = pi
		}
	})
	return c.info
}

type ctxKey int

const (
	connKey ctxKey = iota
	fwdKey
)

// bufPool recycles 32 KiB copy buffers.
type bufPool struct{}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// Get takes a buffer from the pool.
func (bufPool) Get() []byte { return *(copyBufs.Get().(*[]byte)) }

// Put returns a buffer to the pool.
func (bufPool) Put(b []byte) { copyBufs.Put(&b) }
