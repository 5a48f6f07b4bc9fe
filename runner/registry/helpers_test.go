package registry

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	ggcr "github.com/google/go-containerregistry/pkg/registry"
	"log"

	"github.com/nemoclaw/nemoclaw/runner/signing"
)

// tamperServer is go-containerregistry's in-process registry (referrers API
// on) behind a handler that can corrupt GET responses for one digest, the
// way a compromised registry or a man in the middle would.
type tamperServer struct {
	*httptest.Server
	mu     sync.Mutex
	digest string // GETs whose path ends with this are tampered
	mode   string // "flip" or "truncate"
	down   bool
	user   string
	pass   string
}

func newRegistry(t *testing.T) *tamperServer {
	return newRegistryWith(t, regOptions{referrers: true})
}

// regOptions choose how the test registry behaves.
type regOptions struct {
	// referrers turns the referrers API on; off, clients use the
	// sha256-<hex> tag fallback, as on Distribution 2.8.
	referrers bool
	// noDelete answers every DELETE with 405, as Distribution does with
	// its default storage.delete.enabled: false.
	noDelete bool
}

func newRegistryWith(t *testing.T, o regOptions) *tamperServer {
	t.Helper()
	ts := &tamperServer{}
	h := ggcr.New(ggcr.WithReferrersSupport(o.referrers), ggcr.Logger(log.New(io.Discard, "", 0)))
	ts.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ts.mu.Lock()
		d, mode, down, user, pass := ts.digest, ts.mode, ts.down, ts.user, ts.pass
		ts.mu.Unlock()
		if down {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		if o.noDelete && r.Method == http.MethodDelete {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusMethodNotAllowed)
			_, _ = io.WriteString(w, `{"errors":[{"code":"UNSUPPORTED","message":"The operation is unsupported."}]}`)
			return
		}
		if user != "" {
			u, p, ok := r.BasicAuth()
			if !ok || u != user || p != pass {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
		}
		if d == "" || r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, d) {
			h.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		switch mode {
		case "flip":
			body = append([]byte(nil), body...)
			body[len(body)/2] ^= 0x20
		case "truncate":
			body = body[:len(body)/2]
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(rec.Code)
		_, _ = w.Write(body)
	}))
	t.Cleanup(ts.Close)
	return ts
}

func (ts *tamperServer) host() string { return strings.TrimPrefix(ts.URL, "http://") }

func (ts *tamperServer) tamper(digest, mode string) {
	ts.mu.Lock()
	ts.digest, ts.mode = strings.TrimPrefix(digest, "sha256:"), mode
	ts.mu.Unlock()
}

func (ts *tamperServer) setDown(down bool) {
	ts.mu.Lock()
	ts.down = down
	ts.mu.Unlock()
}

// blueprintDir copies testdata/blueprint to a temp dir with version v and
// an extra note file (so two dirs of one version can differ).
func blueprintDir(t testing.TB, v, note string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "bp")
	if err := os.CopyFS(dst, os.DirFS(filepath.Join("testdata", "blueprint"))); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dst, "blueprint.yaml")
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	data = bytes.Replace(data, []byte(`version: "0.1.0"`), []byte(`version: "`+v+`"`), 1)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if note != "" {
		if err := os.WriteFile(filepath.Join(dst, "NOTE.txt"), []byte(note), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// newClient returns a Client with a fresh home.
func newClient(t testing.TB) *Client {
	t.Helper()
	c, err := New(Config{Home: t.TempDir(), Credentials: emptyCreds(t)})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// withHome returns a Client sharing home with c.
func withHome(t testing.TB, c *Client) *Client {
	t.Helper()
	n, err := New(c.cfg)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// emptyCreds keeps tests away from the machine's docker config.
func emptyCreds(t testing.TB) *credStore {
	return &credStore{}
}

var testPass = []byte("test passphrase")

// keyPair generates a signing key and returns its prefix and loaded key.
func keyPair(t testing.TB, dir, name string) (string, *signing.Keypair) {
	t.Helper()
	prefix := filepath.Join(dir, name)
	keyPath, _, err := signing.GenerateKey(prefix, testPass)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := signing.LoadPrivateKey(keyPath, testPass)
	if err != nil {
		t.Fatal(err)
	}
	return prefix, kp
}

// trustKey writes a trust policy in c's home trusting pub for pattern.
func trustKey(t testing.TB, c *Client, pattern, pub string) {
	t.Helper()
	dir := filepath.Dir(c.TrustPolicyFile())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	policy := "version: 1\nrules:\n  - name: test\n    match: [\"" + pattern + "\"]\n    keys: [\"" + pub + "\"]\n"
	if err := os.WriteFile(c.TrustPolicyFile(), []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
}

// push pushes dir to ref and signs it with kp (nil: unsigned).
func push(t testing.TB, c *Client, dir, ref string, kp *signing.Keypair) *Pushed {
	t.Helper()
	ctx := context.Background()
	p, err := c.Push(ctx, PushOptions{Dir: dir, Ref: ref})
	if err != nil {
		t.Fatal(err)
	}
	if kp != nil {
		if _, err := c.Sign(ctx, SignOptions{Ref: p.Ref + "@" + p.Digest, Key: kp}); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// fileState snapshots a file (or its absence) to prove it was not written.
func fileState(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return "<absent>"
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
