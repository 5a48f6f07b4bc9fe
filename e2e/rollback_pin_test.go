package e2e

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRunsRollbackPin: apply v1 of a signed registry blueprint (the lock
// pins 0.1.0), update the lock to v2 and apply it, then roll back: the
// lock pins 0.1.0 again with v1's digest and signer, and the sandbox runs
// v1's launch; the rollback's record carries the pin.
func TestRunsRollbackPin(t *testing.T) {
	requireSandboxKernel(t)
	r := startDistRegistry(t)
	repo := r.addr + "/team/pinned"
	pub := newUser(t)
	pub.login(r)
	key := filepath.Join(pub.home, "publisher")
	pub.must("key", "generate", key)
	for _, v := range []string{"0.1.0", "0.2.0"} {
		pub.must("blueprint", "push", blueprintVersion(t, v, ""), repo+":"+v)
		pub.must("blueprint", "sign", repo+":"+v, "--key", key+".key")
	}

	alice := newUser(t)
	alice.login(r)
	alice.trust(r, key+".pub")
	lock := filepath.Join(alice.project, "nemoclaw.lock")
	t.Cleanup(func() { alice.run("", "sandbox", "destroy", "--force", "pin") })

	alice.must("blueprint", "apply", "-d", repo, "--version", "0.1.0", "--name", "pin", "--", "sh", "-c", "echo agent-v1; sleep 1000")
	v1Lock := snapshot(lock)
	if !strings.Contains(v1Lock, "version: 0.1.0") {
		t.Fatalf("lock after the v1 apply:\n%s", v1Lock)
	}
	alice.must("sandbox", "stop", "--stop-timeout", "0s", "pin")
	alice.must("blueprint", "update", repo, "--version", "~> 0.2")
	if l := snapshot(lock); !strings.Contains(l, "version: 0.2.0") {
		t.Fatalf("lock after update:\n%s", l)
	}
	alice.must("blueprint", "apply", "-d", repo, "--name", "pin", "--", "sh", "-c", "echo agent-v2; sleep 1000")
	var rs []struct {
		ID, Version, Status string
		Pin                 *struct {
			Version, Digest, Signer string
			LockFile                string `json:"lock_file"`
		}
	}
	if err := json.Unmarshal([]byte(alice.must("blueprint", "status", "-o", "json")), &rs); err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 || rs[0].Version != "0.2.0" || rs[0].Pin == nil || rs[1].Pin == nil || rs[1].Pin.Version != "0.1.0" || rs[0].Pin.LockFile != lock {
		t.Fatalf("runs before the rollback: %+v", rs)
	}

	out := alice.must("blueprint", "rollback", rs[0].ID)
	if got := snapshot(lock); got != v1Lock {
		t.Fatalf("lock after rollback:\n%s\nwant the v1 apply's:\n%s", got, v1Lock)
	}
	var st struct{ State, Version string }
	if err := json.Unmarshal([]byte(alice.must("sandbox", "status", "pin", "-o", "json")), &st); err != nil {
		t.Fatal(err)
	}
	if st.State != "running" || st.Version != "0.1.0" {
		t.Fatalf("sandbox after rollback: %+v", st)
	}
	for deadline := time.Now().Add(time.Minute); strings.Count(alice.must("sandbox", "logs", "pin"), "agent-v1") < 2; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("v1's agent did not start again:\n%s", alice.must("sandbox", "logs", "pin"))
		}
	}
	full := alice.must("blueprint", "status", strings.TrimSpace(out))
	if !strings.Contains(full, "0.1.0") || !strings.Contains(full, rs[1].Pin.Digest) {
		t.Fatalf("status of the rollback:\n%s", full)
	}
}
