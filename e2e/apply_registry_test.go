package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestApplyFromRegistry applies a signed blueprint by reference: it is
// fetched, verified and run; a cached pinned apply works with the registry
// down; an untrusted or unsigned blueprint never starts.
func TestApplyFromRegistry(t *testing.T) {
	r := startDistRegistry(t)
	repo := r.addr + "/team/agent"
	pub := newUser(t)
	pub.login(r)
	keyPrefix := filepath.Join(pub.home, "publisher")
	pub.must("key", "generate", keyPrefix)

	bp := filepath.Join(t.TempDir(), "bp")
	if err := os.CopyFS(bp, os.DirFS(filepath.Join("..", "blueprints", "default"))); err != nil {
		t.Fatal(err)
	}
	pub.must("blueprint", "push", bp, repo+":0.1.0")
	pub.must("blueprint", "sign", repo+":0.1.0", "--key", keyPrefix+".key")
	// An unsigned second repository.
	pub.must("blueprint", "push", bp, r.addr+"/team/unsigned:0.1.0")

	alice := newUser(t)
	alice.login(r)
	alice.trust(r, keyPrefix+".pub")
	agent := []string{"--no-tty", "--", "/bin/sh", "-c", "echo agent-ran; exit 5"}
	out, errs, code := alice.run("", append([]string{"blueprint", "apply", repo, "--version", "~> 0.1"}, agent...)...)
	if code != 5 || !strings.Contains(out, "agent-ran") {
		t.Fatalf("apply by constraint: exit %d\nstdout: %s\nstderr: %s", code, out, errs)
	}
	if lock := snapshot(filepath.Join(alice.project, "nemoclaw.lock")); !strings.Contains(lock, "version: 0.1.0") {
		t.Errorf("apply did not pin the version:\n%s", lock)
	}

	// Unsigned: refused before anything runs, lock untouched.
	lockBefore := snapshot(filepath.Join(alice.project, "nemoclaw.lock"))
	out, errs, code = alice.run("", append([]string{"blueprint", "apply", r.addr + "/team/unsigned:0.1.0", "--key", keyPrefix + ".pub"}, agent...)...)
	if code != 3 || strings.Contains(out, "agent-ran") {
		t.Errorf("unsigned apply: exit %d, want 3\nstdout: %s\nstderr: %s", code, out, errs)
	}
	if snapshot(filepath.Join(alice.project, "nemoclaw.lock")) != lockBefore {
		t.Error("a refused apply changed the lock")
	}

	// Registry down: the pinned, cached blueprint applies with no network.
	r.stop()
	out, errs, code = alice.run("", append([]string{"blueprint", "apply", repo, "--version", "~> 0.1"}, agent...)...)
	if code != 5 || !strings.Contains(out, "agent-ran") {
		t.Errorf("offline apply: exit %d\nstdout: %s\nstderr: %s", code, out, errs)
	}
}
