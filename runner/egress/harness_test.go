package egress

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/nemoclaw/nemoclaw/internal/testutil"
	"github.com/nemoclaw/nemoclaw/runner/policy"
)

// mapResolver is a fixed name→address table standing in for DNS, so tests
// can name hosts that resolve to loopback, private and metadata addresses.
type mapResolver map[string][]string

func (m mapResolver) LookupNetIP(_ context.Context, _ string, host string) ([]netip.Addr, error) {
	ss, ok := m[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out, nil
}

var testResolver = mapResolver{
	"api.test":     {"127.0.0.1"},
	"other.test":   {"127.0.0.1"},
	"loop.test":    {"127.0.0.1"},
	"a.corp.test":  {"10.0.0.5"},
	"meta.test":    {"169.254.169.254"},
	"mixed.test":   {"169.254.169.254", "127.0.0.1"},
	"ws.test":      {"127.0.0.1"},
	"tg.test":      {"127.0.0.1"},
	"plain.test":   {"127.0.0.1"},
	"audited.test": {"127.0.0.1"},
}

// testPKI is a CA plus a server certificate for the test upstreams.
type testPKI struct {
	pool *x509.CertPool
	cert tls.Certificate
	pem  []byte
}

var (
	pkiOnce sync.Once
	pki     testPKI
)

func upstreamPKI(t testing.TB) testPKI {
	pkiOnce.Do(func() {
		caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		caT := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "egress test upstream CA"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
		caDER, err := x509.CreateCertificate(rand.Reader, caT, caT, &caKey.PublicKey, caKey)
		if err != nil {
			panic(err)
		}
		ca, _ := x509.ParseCertificate(caDER)
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		lt := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "api.test"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			DNSNames:    []string{"api.test", "other.test", "loop.test", "ws.test", "tg.test", "audited.test", "mixed.test", "localhost"},
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("127.0.0.2"), net.ParseIP("::1")},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
		der, err := x509.CreateCertificate(rand.Reader, lt, ca, &key.PublicKey, caKey)
		if err != nil {
			panic(err)
		}
		pki.pool = x509.NewCertPool()
		pki.pool.AddCert(ca)
		pki.cert = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
		pki.pem = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	})
	return pki
}

// echo is what the upstream test server reports about each request.
type echo struct {
	Method string `json:"method"`
	URI    string `json:"uri"`
	Proto  string `json:"proto"`
	Host   string `json:"host"`
	Auth   string `json:"auth"`
	Body   string `json:"body"`
}

func upstreamHandler() http.Handler {
	up := websocket.Upgrader{}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ws" {
			c, err := up.Upgrade(w, r, nil)
			if err != nil {
				return
			}
			defer c.Close()
			for {
				mt, m, err := c.ReadMessage()
				if err != nil {
					return
				}
				_ = c.WriteMessage(mt, append([]byte("echo:"), m...))
			}
		}
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(echo{Method: r.Method, URI: r.RequestURI, Proto: r.Proto, Host: r.Host, Auth: r.Header.Get("Authorization"), Body: string(b)})
	})
}

// newTLSUpstream starts an HTTPS (h2-capable) upstream on 127.0.0.1.
func newTLSUpstream(t testing.TB) (*httptest.Server, int) {
	s := httptest.NewUnstartedServer(upstreamHandler())
	s.EnableHTTP2 = true
	s.TLS = &tls.Config{Certificates: []tls.Certificate{upstreamPKI(t).cert}}
	s.StartTLS()
	t.Cleanup(s.Close)
	return s, s.Listener.Addr().(*net.TCPAddr).Port
}

func newPlainUpstream(t testing.TB) (*httptest.Server, int) {
	s := httptest.NewServer(upstreamHandler())
	t.Cleanup(s.Close)
	return s, s.Listener.Addr().(*net.TCPAddr).Port
}

type harness struct {
	p        *Proxy
	proxyURL *url.URL
	audit    *testutil.Buffer
	caPool   *x509.CertPool // trusts the proxy CA and the upstream CA
}

func newHarness(t testing.TB, pol *policy.Policy, mod func(*Config)) *harness {
	t.Helper()
	audit := &testutil.Buffer{}
	cfg := Config{Sandbox: "test", Policy: pol, AuditLog: audit, UpstreamRoots: upstreamPKI(t).pool,
		Resolver: testResolver, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if os.Getenv("EGRESS_TEST_LOG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if mod != nil {
		mod(&cfg)
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.Serve(l) }()
	t.Cleanup(func() { _ = p.Close() })
	pool := x509.NewCertPool()
	caPEM, err := p.CACertPEM()
	if err != nil {
		t.Fatal(err)
	}
	pool.AppendCertsFromPEM(caPEM)
	pool.AppendCertsFromPEM(upstreamPKI(t).pem)
	return &harness{p: p, proxyURL: &url.URL{Scheme: "http", Host: l.Addr().String()}, audit: audit, caPool: pool}
}

func (h *harness) client(h2 bool) *http.Client {
	tr := &http.Transport{Proxy: http.ProxyURL(h.proxyURL), TLSClientConfig: &tls.Config{RootCAs: h.caPool}, ForceAttemptHTTP2: h2}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

// do sends one request and returns status, body.
func (h *harness) do(t testing.TB, c *http.Client, method, rawurl, body string, hdr map[string]string) (int, string, *http.Response) {
	t.Helper()
	req, err := http.NewRequest(method, rawurl, strings.NewReader(body))
	if err != nil {
		t.Fatalf("%s %s: %v", method, rawurl, err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		// A refused CONNECT surfaces as a transport error carrying the status.
		if strings.Contains(err.Error(), "Forbidden") {
			return 403, err.Error(), nil
		}
		t.Fatalf("%s %s: %v", method, rawurl, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp
}

func ep(host string, port int, mods ...func(*policy.Endpoint)) *policy.Endpoint {
	e := &policy.Endpoint{Host: host, Port: port}
	for _, m := range mods {
		m(e)
	}
	return e
}

func loopOK(e *policy.Endpoint) { e.AllowedIPs = []string{"127.0.0.1"} }
func rest(e *policy.Endpoint)   { e.Protocol = policy.ProtoREST; e.TLS = "terminate" }
func allow(method, path string) func(*policy.Endpoint) {
	return func(e *policy.Endpoint) {
		e.Rules = append(e.Rules, &policy.Rule{Allow: &policy.Matcher{Method: method, Path: path}})
	}
}
func denyRule(method, path string) func(*policy.Endpoint) {
	return func(e *policy.Endpoint) {
		e.DenyRules = append(e.DenyRules, &policy.Matcher{Method: method, Path: path})
	}
}

func pol(groups map[string][]*policy.Endpoint) *policy.Policy {
	p := &policy.Policy{Version: 1, NetworkPolicies: map[string]*policy.NetworkPolicy{}}
	for k, eps := range groups {
		p.NetworkPolicies[k] = &policy.NetworkPolicy{Name: k, Endpoints: eps}
	}
	return p
}

func u(host string, port int, path string) string {
	return "https://" + net.JoinHostPort(host, strconv.Itoa(port)) + path
}

func decodeDenial(t testing.TB, body string) Denial {
	t.Helper()
	var d Denial
	if err := json.Unmarshal([]byte(body), &d); err != nil {
		t.Fatalf("denial body is not JSON: %v: %q", err, body)
	}
	return d
}

func decodeEcho(t testing.TB, body string) echo {
	t.Helper()
	var e echo
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("upstream body: %v: %q", err, body)
	}
	return e
}

var _ = fmt.Sprintf
