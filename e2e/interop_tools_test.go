package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	ggcr "github.com/google/go-containerregistry/pkg/registry"

	"github.com/nemoclaw/nemoclaw/internal/testutil"
)

// interopTools are the third-party CLIs the interoperability tests run,
// at versions whose go.mod builds with this repository's Go. They are
// built from the Go module proxy once per machine and version (see
// toolBin).
var interopTools = map[string]string{
	"oras":   "oras.land/oras/cmd/oras@v1.3.6",
	"crane":  "github.com/google/go-containerregistry/cmd/crane@v0.22.1",
	"cosign": "github.com/sigstore/cosign/v2/cmd/cosign@v2.6.5",
}

// toolCacheDir is where built tools are kept between runs:
// $NEMOCLAW_E2E_TOOLS, else $XDG_CACHE_HOME/nemoclaw-e2e-tools, else
// ~/.cache/nemoclaw-e2e-tools.
func toolCacheDir() (string, error) {
	if d := os.Getenv("NEMOCLAW_E2E_TOOLS"); d != "" {
		return d, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(d, "nemoclaw-e2e-tools"), nil
}

// toolBin returns the path of tool, building it with `go install` into
// the cache (keyed by its version) the first time. A tool that cannot be
// built skips the test, or fails it under NEMOCLAW_STRICT_TESTS=1.
func toolBin(t *testing.T, tool string) string {
	t.Helper()
	pkg := interopTools[tool]
	base, err := toolCacheDir()
	if err != nil {
		testutil.SkipOrFail(t, "No cache directory for the interoperability tools: "+err.Error())
	}
	dir := filepath.Join(base, strings.ReplaceAll(pkg[strings.LastIndex(pkg, "/")+1:], "@", "-"))
	bin := filepath.Join(dir, tool)
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		testutil.SkipOrFail(t, "Cannot create the tool cache: "+err.Error())
	}
	// One build per tool at a time, across test processes.
	lf, err := os.OpenFile(filepath.Join(base, tool+".lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	start := time.Now()
	cmd := exec.Command("go", "install", "-trimpath", "-ldflags=-s", pkg)
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "GOFLAGS=-mod=mod", "GOTOOLCHAIN=local", "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		testutil.SkipOrFail(t, fmt.Sprintf("Building %s from the Go module proxy failed (%v): %s", pkg, err, lastLines(string(out), 5)))
	}
	t.Logf("built %s in %s into %s", pkg, time.Since(start).Round(time.Second), dir)
	return bin
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// toolEnv is the environment of the third-party tools: a docker config
// with the e2e registry's login, nothing of the machine's.
func toolEnv(t *testing.T, addr string) []string {
	t.Helper()
	dir := t.TempDir()
	cfg := map[string]any{"auths": map[string]any{addr: map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(regUser + ":" + regPass))}}}
	b, _ := json.Marshal(cfg)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return append(os.Environ(), "DOCKER_CONFIG="+dir, "HOME="+dir, "COSIGN_PASSWORD=e2e key pass", "COSIGN_YES=true", "TUF_ROOT="+filepath.Join(dir, "tuf"))
}

// tool runs a third-party tool and fails the test unless it exits 0.
func tool(t *testing.T, env []string, bin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Dir = t.TempDir()
	out, errs, code := runCmd(t, cmd)
	if code != 0 {
		t.Fatalf("%s %s: exit %d\nstdout: %s\nstderr: %s", filepath.Base(bin), strings.Join(args, " "), code, out, errs)
	}
	return out
}

// interopRegistry is one registry the tools are tried against.
type interopRegistry struct {
	name string
	addr string
}

// interopRegistries starts Debian's docker-registry (Distribution 2.8,
// deletes disabled, no referrers API) and go-containerregistry's registry
// with the referrers API.
func interopRegistries(t *testing.T) []interopRegistry {
	r := startDistRegistry(t)
	srv := httptest.NewServer(ggcr.New(ggcr.WithReferrersSupport(true), ggcr.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return []interopRegistry{{"distribution", r.addr}, {"ggcr-referrers", strings.TrimPrefix(srv.URL, "http://")}}
}

// TestInteropTools is the new user's walk-through with the tools people
// already use, on both registries: push with nemoclaw and inspect with
// oras and crane; sign with nemoclaw and verify with cosign; sign with
// cosign (bundle format and legacy) and verify and apply with nemoclaw;
// push with oras and pull with nemoclaw.
func TestInteropTools(t *testing.T) {
	oras, crane, cosign := toolBin(t, "oras"), toolBin(t, "crane"), toolBin(t, "cosign")
	for _, reg := range interopRegistries(t) {
		t.Run(reg.name, func(t *testing.T) {
			env := toolEnv(t, reg.addr)
			repo := reg.addr + "/team/interop"
			u := newUser(t)
			if reg.name == "distribution" {
				u.login(&distRegistry{addr: reg.addr})
			}
			key := filepath.Join(u.home, "publisher")
			u.must("key", "generate", key)
			u.trust(&distRegistry{addr: reg.addr}, key+".pub")

			// nemoclaw push + sign; oras and crane see a plain OCI artifact.
			ref := strings.TrimSpace(u.must("blueprint", "push", blueprintVersion(t, "1.0.0", ""), repo))
			u.must("blueprint", "sign", ref, "--key", key+".key")
			if out := tool(t, env, oras, "discover", "--plain-http", "--format", "json", ref); !strings.Contains(out, `"dev.sigstore.bundle.predicateType": "https://sigstore.dev/cosign/sign/v1"`) {
				// go-containerregistry's registry reports the config media
				// type as artifactType, so the annotation is what both show.
				t.Errorf("oras discover does not list the signature:\n%s", out)
			}
			if out := tool(t, env, crane, "manifest", "--insecure", ref); !strings.Contains(out, `"artifactType":"application/vnd.nemoclaw.blueprint.v1"`) {
				t.Errorf("crane manifest:\n%s", out)
			}
			if out := tool(t, env, crane, "ls", "--insecure", repo); !strings.Contains(out, "1.0.0") {
				t.Errorf("crane ls:\n%s", out)
			}
			// cosign verifies nemoclaw's signature. Its bundle-format
			// verification wants a trusted root even for a key; an empty
			// one is enough offline.
			root := filepath.Join(t.TempDir(), "trusted_root.json")
			if err := os.WriteFile(root, []byte(`{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`), 0o644); err != nil {
				t.Fatal(err)
			}
			if out := tool(t, env, cosign, "verify", "--allow-insecure-registry", "--allow-http-registry", "--new-bundle-format", "--insecure-ignore-tlog", "--trusted-root", root, "--key", key+".pub", ref); !strings.Contains(out, "https://sigstore.dev/cosign/sign/v1") {
				t.Errorf("cosign verify:\n%s", out)
			}

			// cosign signs (bundle format, then legacy) with the same key
			// file; nemoclaw verifies, pulls and applies.
			for i, format := range []string{"--new-bundle-format=true", "--new-bundle-format=false"} {
				v := fmt.Sprintf("1.%d.0", i+1)
				ref := strings.TrimSpace(u.must("blueprint", "push", blueprintVersion(t, v, ""), repo))
				tool(t, env, cosign, "sign", "--allow-insecure-registry", "--allow-http-registry", format, "--tlog-upload=false", "--key", key+".key", ref)
				if out := u.must("blueprint", "verify", ref, "--key", key+".pub"); !strings.Contains(out, "verified") {
					t.Errorf("verify of cosign %s: %s", format, out)
				}
				u.must("blueprint", "pull", ref, "--no-lock")
			}
			agent := []string{"--no-tty", "--dry-run"}
			u.must(append([]string{"blueprint", "apply", repo + ":1.2.0"}, agent...)...)

			// oras push DIR (tar+gzip, directory prefix) pulls and verifies.
			dir := blueprintVersion(t, "2.0.0", "")
			cmd := exec.Command(oras, "push", "--plain-http", "--artifact-type", "application/vnd.nemoclaw.blueprint.v1",
				"--annotation", "org.opencontainers.image.version=2.0.0", repo+":2.0.0", filepath.Base(dir)+"/")
			cmd.Env, cmd.Dir = env, filepath.Dir(dir)
			if out, errs, code := runCmd(t, cmd); code != 0 {
				t.Fatalf("oras push: exit %d\n%s\n%s", code, out, errs)
			}
			u.must("blueprint", "sign", repo+":2.0.0", "--key", key+".key")
			if p := parsePull(t, u.must("blueprint", "pull", repo+":2.0.0", "-o", "json")); p.Version != "2.0.0" {
				t.Errorf("pull of oras push DIR: %+v", p)
			}
		})
	}
}

// TestInteropToolsBuilt builds (or finds cached) every third-party tool
// the interoperability tests run. `make test` runs it on its own first,
// with a timeout long enough for a cold build of cosign on two cores
// (about 11 minutes), so that the suite's own timeout never has to cover one.
func TestInteropToolsBuilt(t *testing.T) {
	for tool := range interopTools {
		if bin := toolBin(t, tool); bin == "" {
			t.Fatalf("no %s", tool)
		}
	}
}
