package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nemoclaw/nemoclaw/internal/testutil"
)

// distRegistry is Debian's docker-registry (distribution 2.8: no referrers
// API, so signatures use the sha256-<hex> tag fallback) on 127.0.0.1 with
// htpasswd basic auth.
type distRegistry struct {
	addr, storage, config string
	cmd                   *exec.Cmd
}

const regUser, regPass = "alice", "e2e-s3cret"

func startDistRegistry(t *testing.T) *distRegistry {
	t.Helper()
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		testutil.SkipOrFail(t, "Debian's docker-registry binary is not installed (apt-get install docker-registry).")
	}
	htpasswdBin, err := exec.LookPath("htpasswd")
	if err != nil {
		testutil.SkipOrFail(t, "htpasswd from apache2-utils is not installed.")
	}
	dir := t.TempDir()
	r := &distRegistry{storage: filepath.Join(dir, "storage"), config: filepath.Join(dir, "config.yml")}
	out, err := exec.Command(htpasswdBin, "-Bbn", regUser, regPass).Output()
	if err != nil {
		t.Fatalf("htpasswd: %v", err)
	}
	htpasswd := filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(htpasswd, out, 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.addr = l.Addr().String()
	l.Close()
	tmpl, err := os.ReadFile(filepath.Join("testdata", "registry", "config.yml.tmpl"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.NewReplacer("{{STORAGE}}", r.storage, "{{ADDR}}", r.addr, "{{HTPASSWD}}", htpasswd).Replace(string(tmpl))
	if err := os.WriteFile(r.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	r.start(t, bin)
	t.Cleanup(r.stop)
	return r
}

func (r *distRegistry) start(t *testing.T, bin string) {
	t.Helper()
	r.cmd = exec.Command(bin, "serve", r.config)
	var logs bytes.Buffer
	r.cmd.Stdout, r.cmd.Stderr = &logs, &logs
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("start docker-registry: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + r.addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusUnauthorized {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.stop()
	t.Fatalf("docker-registry did not come up on %s: %s", r.addr, logs.String())
}

func (r *distRegistry) stop() {
	if r.cmd != nil && r.cmd.Process != nil {
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
		r.cmd = nil
	}
}

// blobFile is where distribution keeps a blob's bytes.
func (r *distRegistry) blobFile(digest string) string {
	hex := strings.TrimPrefix(digest, "sha256:")
	return filepath.Join(r.storage, "docker", "registry", "v2", "blobs", "sha256", hex[:2], hex, "data")
}

// user is one nemoclaw user: a home, a project directory, an environment.
type user struct {
	t       *testing.T
	home    string
	project string
}

func newUser(t *testing.T) *user {
	return &user{t: t, home: t.TempDir(), project: t.TempDir()}
}

// run runs nemoclaw in the user's project directory and returns stdout,
// stderr and the exit code.
func (u *user) run(stdin string, args ...string) (string, string, int) {
	u.t.Helper()
	cmd := exec.Command(Bin("nemoclaw"), args...)
	cmd.Dir = u.project
	cmd.Env = append(os.Environ(), "NEMOCLAW_HOME="+u.home, "NEMOCLAW_KEY_PASSWORD=e2e key pass", "DOCKER_CONFIG="+filepath.Join(u.home, "docker"))
	cmd.Stdin = strings.NewReader(stdin)
	return runCmd(u.t, cmd)
}

// must runs nemoclaw and fails the test unless it exits 0.
func (u *user) must(args ...string) string {
	u.t.Helper()
	out, errs, code := u.run("", args...)
	if code != 0 {
		u.t.Fatalf("nemoclaw %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

// refused runs nemoclaw, expects exit code 3 with want in stderr, and
// checks that neither the lock nor the cache index changed.
func (u *user) refused(want string, args ...string) {
	u.t.Helper()
	lock := filepath.Join(u.project, "nemoclaw.lock")
	index := filepath.Join(u.home, "cache", "oci", "index.json")
	lockBefore, indexBefore := snapshot(lock), snapshot(index)
	out, errs, code := u.run("", args...)
	if code != 3 || !strings.Contains(errs, want) {
		u.t.Fatalf("nemoclaw %s: exit %d, want 3 with %q\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, want, out, errs)
	}
	if snapshot(lock) != lockBefore {
		u.t.Errorf("nemoclaw %s: refused, but nemoclaw.lock changed", strings.Join(args, " "))
	}
	if snapshot(index) != indexBefore {
		u.t.Errorf("nemoclaw %s: refused, but the cache index changed", strings.Join(args, " "))
	}
}

func snapshot(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "<" + err.Error() + ">"
	}
	return string(b)
}

func (u *user) login(r *distRegistry) {
	u.t.Helper()
	if out, errs, code := u.run(regPass+"\n", "registry", "login", r.addr, "-u", regUser, "--password-stdin"); code != 0 {
		u.t.Fatalf("login: %d %s %s", code, out, errs)
	}
}

// trust writes the user's trust policy: pub is trusted for team/*.
func (u *user) trust(r *distRegistry, pub string) {
	u.t.Helper()
	policy := fmt.Sprintf("version: 1\nrules:\n  - name: team\n    match: [\"%s/team/*\"]\n    keys: [%q]\n", r.addr, pub)
	if err := os.MkdirAll(filepath.Join(u.home, "trust"), 0o755); err != nil {
		u.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(u.home, "trust", "policy.yaml"), []byte(policy), 0o644); err != nil {
		u.t.Fatal(err)
	}
}

// blueprintVersion copies the fixture blueprint with version v (and an
// optional extra file so that two copies of one version differ).
func blueprintVersion(t *testing.T, v, note string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "bp")
	if err := os.CopyFS(dst, os.DirFS(filepath.Join("..", "runner", "registry", "testdata", "blueprint"))); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dst, "blueprint.yaml")
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, bytes.Replace(data, []byte(`version: "0.1.0"`), []byte(`version: "`+v+`"`), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	if note != "" {
		if err := os.WriteFile(filepath.Join(dst, "NOTE.txt"), []byte(note), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

type pullJSON struct {
	Dir       string `json:"dir"`
	Version   string `json:"version"`
	Digest    string `json:"digest"`
	Signer    string `json:"signer"`
	FromCache bool   `json:"from_cache"`
}

func parsePull(t *testing.T, out string) pullJSON {
	t.Helper()
	var p pullJSON
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatalf("pull output %q: %v", out, err)
	}
	return p
}

// TestRegistryNewUserStory is the acceptance walk-through on a real
// distribution registry: generate a key, push and sign, pin with a
// constraint, then tamper with the registry's blobs and watch pull refuse.
func TestRegistryNewUserStory(t *testing.T) {
	r := startDistRegistry(t)
	repo := r.addr + "/team/bp"
	pub := newUser(t)
	pub.login(r)
	keyPrefix := filepath.Join(pub.home, "publisher")
	pub.must("key", "generate", keyPrefix)
	for _, v := range []string{"1.1.0", "1.2.0", "1.2.3", "2.0.0-rc.1"} {
		pub.must("blueprint", "push", blueprintVersion(t, v, ""), repo)
		pub.must("blueprint", "sign", repo+":"+v, "--key", keyPrefix+".key")
	}
	// Pushing the same directory again gives the same digest.
	d1 := pub.must("blueprint", "push", blueprintVersion(t, "1.2.3", ""), repo)
	d2 := pub.must("blueprint", "push", blueprintVersion(t, "1.2.3", ""), repo)
	if d1 != d2 {
		t.Fatalf("push is not deterministic: %s vs %s", d1, d2)
	}

	// A consumer trusts the publisher's key and pins "~> 1.2".
	alice := newUser(t)
	alice.login(r)
	alice.trust(r, keyPrefix+".pub")
	got := parsePull(t, alice.must("blueprint", "pull", repo, "--version", "~> 1.2", "-o", "json"))
	if got.Version != "1.2.3" || !strings.HasPrefix(got.Signer, "key sha256:") || got.FromCache {
		t.Fatalf("pull ~> 1.2: %+v", got)
	}
	if _, err := os.Stat(filepath.Join(got.Dir, "blueprint.yaml")); err != nil {
		t.Fatalf("unpacked blueprint: %v", err)
	}
	lock := snapshot(filepath.Join(alice.project, "nemoclaw.lock"))
	for _, want := range []string{"ref: " + repo, "version: 1.2.3", "digest: " + got.Digest, "signer: key sha256:", "constraint: ~> 1.2"} {
		if !strings.Contains(lock, want) {
			t.Errorf("lock lacks %q:\n%s", want, lock)
		}
	}
	if list := alice.must("blueprint", "list"); !strings.Contains(list, got.Digest) || !strings.Contains(list, "yes     yes") {
		t.Errorf("list:\n%s", list)
	}
	// Pre-releases only when the constraint names one.
	if v := parsePull(t, alice.must("blueprint", "pull", repo, "--version", ">= 2.0.0-rc.1", "--no-lock", "-o", "json")); v.Version != "2.0.0-rc.1" {
		t.Errorf("pre-release constraint chose %s", v.Version)
	}
	// verify: the publisher's key passes, another key is refused (exit 3).
	alice.must("blueprint", "verify", repo+":1.2.3", "--key", keyPrefix+".pub")
	otherKey := filepath.Join(alice.home, "other")
	alice.must("key", "generate", otherKey)
	alice.refused("not signed by", "blueprint", "verify", repo+":1.2.3", "--key", otherKey+".pub")
	// A second signer on the same digest, with deletes disabled: both
	// signs exit 0 and either key verifies.
	alice.must("blueprint", "sign", repo+":1.2.3", "--key", otherKey+".key")
	alice.must("blueprint", "sign", repo+":1.2.3", "--key", otherKey+".key")
	for _, k := range []string{keyPrefix, otherKey} {
		alice.must("blueprint", "verify", repo+":1.2.3", "--key", k+".pub")
	}

	// Registry down: the pinned, cached digest needs no network; a user
	// with an empty cache gets a clear error (exit 1, not a refusal).
	r.stop()
	if again := parsePull(t, alice.must("blueprint", "pull", repo, "--version", "~> 1.2", "-o", "json")); !again.FromCache || again.Digest != got.Digest {
		t.Errorf("offline pull: %+v", again)
	}
	bob := newUser(t)
	bob.trust(r, keyPrefix+".pub")
	if err := os.WriteFile(filepath.Join(bob.project, "nemoclaw.lock"), []byte(lock), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, errs, code := bob.run("", "blueprint", "pull", repo, "--version", "~> 1.2"); code != 1 || !strings.Contains(errs, "running and reachable") {
		t.Fatalf("registry down, empty cache: exit %d: %s", code, errs)
	}
	bin, _ := exec.LookPath("docker-registry")
	r.start(t, bin)
	bob.login(r)

	// An unsigned newer version: update refuses it.
	pub.must("blueprint", "push", blueprintVersion(t, "1.3.0", ""), repo)
	alice.refused("no signature found", "blueprint", "update", repo)
	// Downgrade below the lock needs --allow-downgrade.
	alice.refused("lower than the locked 1.2.3", "blueprint", "update", repo, "--version", "< 1.2")
	alice.must("blueprint", "update", repo, "--version", "< 1.2", "--allow-downgrade")
	alice.must("blueprint", "update", repo, "--version", "~> 1.2.0")

	// Tamper with the registry's copy of the locked layer: a new user with
	// the same lock is refused and nothing is written.
	var m struct {
		Layers []struct {
			Digest string `json:"digest"`
		} `json:"layers"`
	}
	if err := json.Unmarshal([]byte(snapshot(r.blobFile(got.Digest))), &m); err != nil || len(m.Layers) != 1 {
		t.Fatalf("manifest in storage: %v", err)
	}
	layerFile := r.blobFile(m.Layers[0].Digest)
	orig, err := os.ReadFile(layerFile)
	if err != nil {
		t.Fatal(err)
	}
	flipped := bytes.Clone(orig)
	flipped[len(flipped)/2] ^= 0x20
	if err := os.WriteFile(layerFile, flipped, 0o644); err != nil {
		t.Fatal(err)
	}
	bob.refused("does not match its digest", "blueprint", "pull", repo, "--version", "~> 1.2")
	// Truncated blob.
	if err := os.WriteFile(layerFile, orig[:len(orig)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	bob.refused("refused", "blueprint", "pull", repo, "--version", "~> 1.2")
	if err := os.WriteFile(layerFile, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	// Modified manifest: the bytes no longer hash to the locked digest.
	manifestFile := r.blobFile(got.Digest)
	mb, _ := os.ReadFile(manifestFile)
	if err := os.WriteFile(manifestFile, bytes.Replace(mb, []byte(`"1.2.3"`), []byte(`"1.2.4"`), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	bob.refused("refused", "blueprint", "pull", repo, "--version", "~> 1.2")
	if err := os.WriteFile(manifestFile, mb, 0o644); err != nil {
		t.Fatal(err)
	}
	// Restored: the same pull now verifies.
	if p := parsePull(t, bob.must("blueprint", "pull", repo, "--version", "~> 1.2", "-o", "json")); p.Digest != got.Digest {
		t.Errorf("restored pull %+v", p)
	}

	// Tag moved after locking: the publisher re-pushes 1.2.3 with other
	// content (signed), and a user with the old lock and no cache refuses.
	movedDir := blueprintVersion(t, "1.2.3", "moved")
	pub.refused("already holds "+got.Digest, "blueprint", "push", movedDir, repo)
	moved := pub.must("blueprint", "push", movedDir, repo, "--force")
	pub.must("blueprint", "sign", strings.TrimSpace(moved), "--key", keyPrefix+".key")
	carol := newUser(t)
	carol.login(r)
	carol.trust(r, keyPrefix+".pub")
	if err := os.WriteFile(filepath.Join(carol.project, "nemoclaw.lock"), []byte(lock), 0o644); err != nil {
		t.Fatal(err)
	}
	carol.refused("tag was moved after locking", "blueprint", "pull", repo, "--version", "~> 1.2")
	// --insecure-skip-verify is explicit and loud.
	_, errs, code := carol.run("", "blueprint", "pull", repo+":1.3.0", "--no-lock", "--insecure-skip-verify")
	if code != 0 || !strings.Contains(errs, "WARNING") {
		t.Errorf("insecure pull: exit %d: %s", code, errs)
	}
}
