package e2e

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nemoclaw/nemoclaw/internal/testutil"
)

// egressEnv is the host side of the egress e2e: HTTPS test servers on
// 127.0.0.2 with their own CA (which the supervisor trusts through
// SSL_CERT_FILE, as it would a corporate root), a git smart-HTTP backend,
// and a host-only service on 127.0.0.1 the sandbox must never reach.
type egressEnv struct {
	dir, home, workdir string
	caBundle           string // system bundle + test CA, for the supervisor
	port, tgPort, hp   int
	secret             string
}

func requireEgressTools(t *testing.T) {
	t.Helper()
	requireSandboxKernel(t)
	for _, tool := range []string{"curl", "python3", "node", "git"} {
		if _, err := exec.LookPath(tool); err != nil {
			testutil.SkipOrFail(t, tool+" is not installed, and the egress e2e drives it as a real client")
		}
	}
	if _, err := os.Stat("/usr/lib/git-core/git-http-backend"); err != nil {
		testutil.SkipOrFail(t, "git-http-backend is not installed, and the egress e2e serves a real git repository with it")
	}
	l, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		testutil.SkipOrFail(t, "cannot listen on 127.0.0.2, which the egress e2e uses as an upstream outside NO_PROXY")
	}
	l.Close()
}

func newEgressEnv(t *testing.T) *egressEnv {
	t.Helper()
	base, err := os.MkdirTemp("", "nemoclaw-e2e-egress-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	_ = os.Chmod(base, 0o755)
	e := &egressEnv{dir: base, home: filepath.Join(base, "home"), workdir: filepath.Join(base, "work"), secret: "424242:AAH-real-bot-secret"}
	for _, d := range []string{e.home, e.workdir} {
		if err := os.Mkdir(d, 0o777); err != nil {
			t.Fatal(err)
		}
		_ = os.Chmod(d, 0o777)
	}
	if os.Geteuid() == 0 {
		// A root launcher refuses a root-owned workspace: a user's.
		if err := os.Chown(e.workdir, rootLauncherWorkdirOwner, rootLauncherWorkdirOwner); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"clients.sh", "fetch.js", "urllib_get.py", "dnsq.py"} {
		b, err := os.ReadFile(filepath.Join("testdata", "egress", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(e.workdir, f), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cert, caPEM := testServerCert(t)
	sys, _ := os.ReadFile("/etc/ssl/certs/ca-certificates.crt")
	e.caBundle = filepath.Join(base, "supervisor-roots.pem")
	if err := os.WriteFile(e.caBundle, append(append(sys, '\n'), caPEM...), 0o644); err != nil {
		t.Fatal(err)
	}
	repoRoot := makeGitRepo(t, filepath.Join(base, "git"))
	mux := http.NewServeMux()
	mux.Handle("/git/", &cgi.Handler{Path: "/usr/lib/git-core/git-http-backend", Root: "/git",
		Env: []string{"GIT_PROJECT_ROOT=" + repoRoot, "GIT_HTTP_EXPORT_ALL=1"}})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "ok %s %s %s\n", r.Method, r.URL.EscapedPath(), r.Proto)
	})
	e.port = serveTLS(t, "127.0.0.2:0", mux, cert)
	e.tgPort = serveTLS(t, "127.0.0.2:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/bot"+e.secret+"/getMe" {
			fmt.Fprint(w, "token-accepted")
			return
		}
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, "token-rejected")
	}), cert)
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "host-only service") })}
	go hs.Serve(hl)
	t.Cleanup(func() { hs.Close() })
	e.hp = hl.Addr().(*net.TCPAddr).Port
	return e
}

func serveTLS(t *testing.T, addr string, h http.Handler, cert tls.Certificate) int {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &http.Server{Handler: h, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}}}
	go s.ServeTLS(l, "", "")
	t.Cleanup(func() { s.Close() })
	return l.Addr().(*net.TCPAddr).Port
}

// testServerCert makes a CA and a server certificate for 127.0.0.2.
func testServerCert(t *testing.T) (tls.Certificate, []byte) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caT := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "nemoclaw e2e upstream CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caT, caT, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	lt := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.2"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.2")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, lt, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
}

// makeGitRepo creates dir/repo.git with one commit holding README.
func makeGitRepo(t *testing.T, dir string) string {
	t.Helper()
	work := filepath.Join(dir, "work")
	git := func(args ...string) {
		cmd := exec.Command("git", append([]string{"-c", "user.name=e2e", "-c", "user.email=e2e@example.com", "-c", "init.defaultBranch=main"}, args...)...)
		cmd.Env = append(os.Environ(), "HOME="+dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	if err := os.MkdirAll(work, 0o755); err != nil {
		t.Fatal(err)
	}
	git("init", "-q", work)
	if err := os.WriteFile(filepath.Join(work, "README"), []byte("cloned-through-the-proxy\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	git("-C", work, "add", "README")
	git("-C", work, "commit", "-q", "-m", "init")
	git("clone", "-q", "--bare", work, filepath.Join(dir, "repo.git"))
	// Let the server accept pushes, so that only the proxy's rules stop them.
	git("-C", filepath.Join(dir, "repo.git"), "config", "http.receivepack", "true")
	return dir
}

func (e *egressEnv) writePolicy(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "egress", "policy.yaml.tmpl"))
	if err != nil {
		t.Fatal(err)
	}
	s := strings.NewReplacer("{{P}}", strconv.Itoa(e.port), "{{TG}}", strconv.Itoa(e.tgPort), "{{HP}}", strconv.Itoa(e.hp)).Replace(string(b))
	p := filepath.Join(e.dir, "policy.yaml")
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// nemoclaw builds a command for the built binary with the env's home and
// the supervisor's trust roots.
func (e *egressEnv) nemoclaw(args ...string) *exec.Cmd {
	cmd := exec.Command(Bin("nemoclaw"), args...)
	cmd.Env = []string{"NEMOCLAW_HOME=" + e.home, "PATH=" + os.Getenv("PATH"), "SSL_CERT_FILE=" + e.caBundle, "E2E_TG_SECRET=" + e.secret}
	return cmd
}

// TestEgressRealClients runs curl, python3 (urllib), node and git inside a
// real sandbox against local HTTPS servers through the proxy, and tries the
// ways around it.
func TestEgressRealClients(t *testing.T) {
	requireEgressTools(t)
	e := newEgressEnv(t)
	pol := e.writePolicy(t)
	cmd := e.nemoclaw("sandbox", "run", "--name", "egress-e2e", "--no-tty", "--workdir", e.workdir, "--policy", pol, "--",
		"env", "P="+strconv.Itoa(e.port), "TG="+strconv.Itoa(e.tgPort), "HP="+strconv.Itoa(e.hp), "/bin/sh", "/sandbox/clients.sh")
	out, stderr, code := runCmd(t, cmd)
	if code != 0 {
		t.Fatalf("sandbox run: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, stderr)
	}
	got := parseResults(out)
	want := map[string]string{
		"curl_allowed":          "200",
		"curl_not_in_rules":     "403",
		"curl_post_denied":      "403",
		"curl_deny_rule":        "403",
		"curl_dots":             "403",
		"curl_encoded_dots":     "403",
		"curl_params":           "403",
		"curl_double_encoded":   "403",
		"curl_h2":               "2",
		"curl_deny_body":        fmt.Sprintf("127.0.0.2 %d GET /admin True True", e.port),
		"python":                "200 403",
		"node":                  "200 403",
		"git":                   "cloned-through-the-proxy",
		"git_push":              "error: RPC failed; HTTP 403",
		"token_env":             "nemoclaw-ph-",
		"token_bound":           "token-accepted",
		"token_elsewhere":       "403",
		"token_binary":          "tunnel-403",
		"ssrf_direct_bypass":    "000",
		"ssrf_host_loopback":    "403",
		"ssrf_v6_loopback":      "403",
		"ssrf_metadata":         "403",
		"ssrf_metadata_name":    "403",
		"ssrf_decimal":          "403",
		"ssrf_octal":            "403",
		"ssrf_name_to_loopback": "403",
		"dns_allowed":           "0/1/127.0.0.1",
		"dns_refused":           "5/0/-",
		"dns_getent":            "2",
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s = %q, want %q", k, got[k], w)
		}
	}
	if t.Failed() {
		t.Logf("stdout:\n%s\nstderr:\n%s", out, stderr)
	}
	// The audit log names decisions, never the secret or query strings.
	audit, err := os.ReadFile(filepath.Join(e.home, "sandboxes", "egress-e2e", "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(audit, []byte(e.secret)) {
		t.Fatal("the bot secret is in the audit log")
	}
	var denies, allows, summaries int
	sc := bufio.NewScanner(bytes.NewReader(audit))
	for sc.Scan() {
		var ev struct{ Decision, Activity, Binary string }
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		switch {
		case ev.Activity == "summary":
			summaries++
		case ev.Decision == "deny":
			denies++
		case ev.Decision == "allow":
			allows++
		}
	}
	if denies < 15 || allows < 10 || summaries == 0 {
		t.Fatalf("audit log: %d denies, %d allows, %d summaries", denies, allows, summaries)
	}
}

// TestEgressApprovalAndLiveReload is the new-user story: a request outside
// the policy waits in the approval queue, an operator approves it with the
// CLI and it goes through; then `nemoclaw policy add` opens another
// destination while the sandbox keeps running.
func TestEgressApprovalAndLiveReload(t *testing.T) {
	requireEgressTools(t)
	e := newEgressEnv(t)
	pol := e.writePolicy(t)
	plain := func() int {
		l, err := net.Listen("tcp", "127.0.0.2:0")
		if err != nil {
			t.Fatal(err)
		}
		s := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintf(w, "reached %s", r.URL.Path) })}
		go s.Serve(l)
		t.Cleanup(func() { s.Close() })
		return l.Addr().(*net.TCPAddr).Port
	}
	p1, p2 := plain(), plain()
	script := fmt.Sprintf(`curl -sS -m 60 http://127.0.0.2:%d/one; echo
while [ ! -f /sandbox/go ]; do sleep 0.05; done
curl -sS -m 10 http://127.0.0.2:%d/two; echo`, p1, p2)
	run := e.nemoclaw("sandbox", "run", "--name", "appr", "--approvals", "--approval-timeout", "60s", "--no-tty",
		"--workdir", e.workdir, "--policy", pol, "--", "/bin/sh", "-c", script)
	var out, errb bytes.Buffer
	run.Stdout, run.Stderr = &out, &errb
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- run.Wait() }()
	fail := func(format string, a ...any) {
		t.Helper()
		_ = run.Process.Kill()
		<-done
		t.Fatalf(format+"\nsandbox stdout:\n%s\nstderr:\n%s", append(a, out.String(), errb.String())...)
	}
	var id string
	for deadline := time.Now().Add(30 * time.Second); id == "" && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		o, _, code := runCmd(t, e.nemoclaw("policy", "approvals", "appr", "--list", "-o", "json"))
		if code != 0 {
			continue
		}
		var items []struct {
			ID, Host, Binary string
			Port, Waiting    int
		}
		if err := json.Unmarshal([]byte(o), &items); err != nil {
			fail("approvals --list: %v: %s", err, o)
		}
		for _, it := range items {
			if it.Host == "127.0.0.2" && it.Port == p1 && it.Waiting == 1 {
				if it.Binary != "/usr/bin/curl" {
					fail("approval names binary %q, want /usr/bin/curl", it.Binary)
				}
				id = it.ID
			}
		}
	}
	if id == "" {
		fail("the refused request never showed up in the approval queue")
	}
	if o, se, code := runCmd(t, e.nemoclaw("policy", "approve", "appr", id)); code != 0 || !strings.Contains(o, "approved 127.0.0.2:"+strconv.Itoa(p1)) {
		fail("approve: exit %d %s %s", code, o, se)
	}
	// A live policy change that touches a locked field is refused (exit 3)
	// and changes nothing; a preset then adds p2 without a restart.
	locked := filepath.Join(e.dir, "locked.yaml")
	_ = os.WriteFile(locked, []byte("version: 1\nprocess:\n  run_as_user: root\nnetwork_policies: {}\n"), 0o644)
	if _, se, code := runCmd(t, e.nemoclaw("policy", "set", "appr", locked)); code != 3 || !strings.Contains(se, "process") {
		fail("policy set with a locked field: exit %d: %s", code, se)
	}
	preset := filepath.Join(e.dir, "p2.yaml")
	_ = os.WriteFile(preset, []byte(fmt.Sprintf("preset:\n  name: p2\n  description: second local server\nnetwork_policies:\n  p2:\n    name: p2\n    endpoints:\n      - { host: 127.0.0.2, port: %d, protocol: rest, access: read-only }\n", p2)), 0o644)
	if o, se, code := runCmd(t, e.nemoclaw("policy", "add", "appr", preset)); code != 0 || !strings.Contains(o, "generation 2") {
		fail("policy add: exit %d %s %s", code, o, se)
	}
	// A preset of the embedded blueprint, by name.
	if o, se, code := runCmd(t, e.nemoclaw("policy", "add", "appr", "pypi")); code != 0 || !strings.Contains(o, "preset pypi added (generation 3)") {
		fail("policy add pypi: exit %d %s %s", code, o, se)
	}
	if _, se, code := runCmd(t, e.nemoclaw("policy", "deny", "appr", "999")); code != 1 || !strings.Contains(se, "no pending approval") {
		fail("deny of an unknown id: exit %d %s", code, se)
	}
	if _, se, code := runCmd(t, e.nemoclaw("policy", "approvals", "not-running", "--list")); code != 1 || !strings.Contains(se, "is the sandbox running") {
		fail("approvals of a sandbox that is not running: exit %d %s", code, se)
	}
	if err := os.WriteFile(filepath.Join(e.workdir, "go"), nil, 0o644); err != nil {
		fail("%v", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("sandbox: %v\n%s\n%s", err, out.String(), errb.String())
		}
	case <-time.After(60 * time.Second):
		fail("sandbox did not finish")
	}
	if o := out.String(); !strings.Contains(o, "reached /one") || !strings.Contains(o, "reached /two") {
		t.Fatalf("approved and reloaded requests did not get through:\n%s\nstderr:\n%s", o, errb.String())
	}
}
