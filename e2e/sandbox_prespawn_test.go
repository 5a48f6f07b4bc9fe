package e2e

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestSandboxPrespawnedInit checks the fast launch: `sandbox run` uses the
// init that the binary's C constructor cloned before the Go runtime started
// (as root and rootless), and a run that ends up needing no sandbox leaves
// no such init behind.
func TestSandboxPrespawnedInit(t *testing.T) {
	requireSandboxKernel(t)
	users := map[string]int{"caller": -1}
	if os.Geteuid() == 0 {
		users["new unprivileged user"] = nobody // dropping to another user needs root
	}
	for name, uid := range users {
		t.Run("used by "+name, func(t *testing.T) {
			r := newSandboxRun(t, uid)
			out, stderr, code := r.run(t, []string{"--log-level", "debug"}, "/bin/sh", "-c", "echo $PPID; tr -d '\\0' </proc/1/cmdline | wc -c")
			if code != 0 {
				t.Fatalf("exit %d\n%s", code, stderr)
			}
			if !strings.Contains(stderr, "init=pre-spawned") {
				t.Errorf("the run did not use the pre-spawned init:\n%s", stderr)
			}
			// The agent is the child of the init (pid 1), whose argv
			// (the host's command line) was wiped.
			if out != "1\n0\n" {
				t.Errorf("got %q, want the agent's parent to be pid 1 and an empty /proc/1/cmdline", out)
			}
			// The CA bundle is the host's (which a root init copies
			// ahead, into /dev/shm) then the sandbox's CA, and nothing
			// of the copy is left behind.
			host, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt")
			if err != nil {
				t.Fatalf("this test expects Debian's CA bundle: %v", err)
			}
			out, stderr, code = r.run(t, nil, "/bin/sh", "-c", "cat /run/nemoclaw/ca-bundle.pem; echo ===; cat /run/nemoclaw/ca.pem; echo ===; ls -A /dev/shm")
			parts := strings.Split(out, "===\n")
			if code != 0 || len(parts) != 3 {
				t.Fatalf("exit %d, output %d parts\n%s", code, len(parts), stderr)
			}
			if want := string(host) + "\n" + parts[1]; parts[0] != want || !strings.HasPrefix(parts[1], "-----BEGIN CERTIFICATE-----") {
				t.Errorf("ca-bundle.pem (%d bytes) is not the host's bundle (%d bytes), a newline and ca.pem (%d bytes)", len(parts[0]), len(host), len(parts[1]))
			}
			if parts[2] != "" {
				t.Errorf("/dev/shm holds %q, want it empty", parts[2])
			}
		})
	}

	t.Run("unused init exits", func(t *testing.T) {
		// Become the subreaper: the pre-spawned init, orphaned when
		// nemoclaw exits, is then reparented to this test, which can see
		// that it existed and that it ended.
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			t.Fatalf("prctl subreaper: %v", err)
		}
		defer unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
		home := t.TempDir()
		for _, args := range [][]string{
			{"sandbox", "run", "--help"},
			{"sandbox", "run", "--policy", "/nonexistent/policy.yaml", "--", "true"},
			{"blueprint", "apply", "--dry-run"},
		} {
			cmd := exec.Command(Bin("nemoclaw"), args...)
			cmd.Env = []string{"NEMOCLAW_HOME=" + home, "PATH=" + os.Getenv("PATH")}
			_, _, _ = runCmd(t, cmd)
			orphans := reapOrphans(t, 2*time.Second)
			if orphans != 1 {
				t.Errorf("%v: reaped %d pre-spawned inits, want exactly 1 that exited on its own", args, orphans)
			}
			// A run that never started leaves nothing in NEMOCLAW_HOME
			// (the egress files are made ahead, in the background).
			if ents, _ := os.ReadDir(home); len(ents) != 0 {
				t.Errorf("%v left %v in NEMOCLAW_HOME", args, ents)
			}
		}
	})

	t.Run("a given name replaces the one chosen ahead", func(t *testing.T) {
		// The egress files are made ahead for a name chosen before the
		// flags are parsed; with --name they must go, and only the named
		// sandbox's directory stay (kept for its audit log: the agent
		// makes a request the policy refuses).
		home := t.TempDir()
		cmd := exec.Command(Bin("nemoclaw"), "sandbox", "run", "--no-tty", "--name", "given-name", "--",
			"curl", "-s", "-o", "/dev/null", "http://denied.example/")
		cmd.Env = []string{"NEMOCLAW_HOME=" + home, "PATH=" + os.Getenv("PATH")}
		if _, stderr, code := runCmd(t, cmd); code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		ents, err := os.ReadDir(home + "/sandboxes")
		if err != nil || len(ents) != 1 || ents[0].Name() != "given-name" {
			t.Fatalf("sandboxes/ holds %v (%v), want only given-name", ents, err)
		}
	})
}

// TestQuickRunsLeaveNothing runs quick agents through the command, whose
// process exits right after its sandbox (and leaves the proxy's sockets to
// that exit): a run that logged nothing leaves no directory behind (quick
// runs used to pile up one each in $NEMOCLAW_HOME/sandboxes), and says
// nothing on stderr. A run that did log keeps its audit log and its
// supervisor's files, and only them.
func TestQuickRunsLeaveNothing(t *testing.T) {
	requireSandboxKernel(t)
	home := t.TempDir()
	for i := range 20 {
		name := fmt.Sprintf("quick-%d", i)
		cmd := exec.Command(Bin("nemoclaw"), "sandbox", "run", "--no-tty", "--name", name, "--", "true")
		cmd.Env = []string{"NEMOCLAW_HOME=" + home, "PATH=" + os.Getenv("PATH")}
		_, stderr, code := runCmd(t, cmd)
		if code != 0 || stderr != "" {
			t.Fatalf("run %d: exit %d, stderr %q", i, code, stderr)
		}
		if _, err := os.Stat(filepath.Join(home, "sandboxes", name)); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("run %d left its sandbox directory (%v)", i, err)
		}
	}
	// A refused request is an audit event: that run keeps its log.
	cmd := exec.Command(Bin("nemoclaw"), "sandbox", "run", "--no-tty", "--name", "logged", "--",
		"curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://denied.example/")
	cmd.Env = []string{"NEMOCLAW_HOME=" + home, "PATH=" + os.Getenv("PATH")}
	out, stderr, code := runCmd(t, cmd)
	if code != 0 || !strings.Contains(out, "403") {
		t.Fatalf("refused request: exit %d, output %q\n%s", code, out, stderr)
	}
	ents, err := os.ReadDir(filepath.Join(home, "sandboxes", "logged"))
	if err != nil {
		t.Fatal(err)
	}
	// Its supervisor's log (the WARN about the refusal), state record
	// and launch (for `sandbox start`) stay beside it.
	var left []string
	for _, e := range ents {
		left = append(left, e.Name())
	}
	if strings.Join(left, " ") != "audit.jsonl launch.json supervisor.json supervisor.log" {
		t.Fatalf("the logged run left %v, want audit.jsonl, launch.json, supervisor.json and supervisor.log", left)
	}
	if st, err := os.Stat(filepath.Join(home, "sandboxes", "logged", "audit.jsonl")); err != nil || st.Size() == 0 {
		t.Fatalf("the logged run's audit log: %v (size %v)", err, st)
	}
}

// reapOrphans waits up to d for the subreaper's orphaned children to exit
// and returns how many it reaped; one still running after d fails the test.
func reapOrphans(t *testing.T, d time.Duration) int {
	t.Helper()
	n := 0
	deadline := time.Now().Add(d)
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		switch {
		case errors.Is(err, unix.ECHILD):
			return n
		case err != nil:
			t.Fatalf("wait4: %v", err)
		case pid > 0:
			n++
			continue
		}
		if time.Now().After(deadline) {
			t.Fatalf("an orphaned pre-spawned init still runs after %v", d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
