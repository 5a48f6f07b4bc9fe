package e2e

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestSandboxConnectDetach drives connect in a real pty: ctrl-p ctrl-q
// detaches, connect exits 0 and the shell (with a job it started) runs
// on; a ctrl-p followed by another key reaches the shell; --detach-keys
// picks another sequence; an exit without detaching ends the shell.
func TestSandboxConnectDetach(t *testing.T) {
	requireSandboxKernel(t)
	e := newSupEnv(t)
	e.startWaiting(t, "dk")

	cmd, out := e.inPTY(t, "sandbox", "connect", "dk")
	out.expect(t, "$ ")
	out.send(t, "exec sleep 4301 & echo D-$((40+2))\n")
	out.expect(t, "D-42")
	waitUntil(t, "the shell's job to start", func() bool { return len(findCmdline("sleep\x004301")) > 0 })
	// A lone ctrl-p reaches the shell; the ctrl-p ctrl-q after it detaches.
	out.send(t, "\x10\x10\x11")
	if err := waitBounded(cmd); err != nil {
		t.Fatalf("connect after ctrl-p ctrl-q: %v\n%s", err, out.text())
	}
	out.expect(t, "detached from sandbox dk")
	// A hang-up, had the detach sent one, would have ended the shell and
	// its job by now.
	time.Sleep(500 * time.Millisecond)
	if len(findCmdline("sleep\x004301")) == 0 {
		t.Fatalf("the detached shell's job is gone:\n%s", out.text())
	}
	// The detached shell runs on: it is in the sandbox's process list.
	if ps := e.must(t, "sandbox", "exec", "dk", "--", "sh", "-c", "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done"); !strings.Contains(ps, "sleep 4301") || !strings.Contains(ps, "-i") {
		t.Fatalf("processes in the sandbox after the detach:\n%s", ps)
	}

	// Another sequence; the default one is then ordinary input.
	cmd, out = e.inPTY(t, "sandbox", "connect", "--detach-keys", "ctrl-],q", "dk")
	out.expect(t, "$ ")
	out.send(t, "\x10\x11echo K-$((3*3))\n")
	out.expect(t, "K-9")
	out.send(t, "\x1dq")
	if err := waitBounded(cmd); err != nil {
		t.Fatalf("connect after ctrl-] q: %v\n%s", err, out.text())
	}
	out.expect(t, "detached from sandbox dk")

	// exit without a detach ends the shell as before.
	cmd, out = e.inPTY(t, "sandbox", "exec", "-t", "dk", "--", "sh", "-c", "echo up-$((1+1)); exec sleep 4302")
	out.expect(t, "up-2")
	out.send(t, "\x03")
	if err := waitBounded(cmd); exitCode(err) != 130 {
		t.Fatalf("exec -t after ^C: %v, want 130\n%s", err, out.text())
	}

	// A bad sequence is a usage error.
	if _, errs, code := e.nc(t, "sandbox", "connect", "--detach-keys", "ctrl-1", "dk"); code != 2 || !strings.Contains(errs, "ctrl-1") {
		t.Fatalf("--detach-keys ctrl-1: exit %d\n%s", code, errs)
	}
}

// waitBounded waits for cmd, killing it after 20 s: a connect that did
// not detach fails the test instead of hanging it.
func waitBounded(cmd *exec.Cmd) error {
	t := time.AfterFunc(20*time.Second, func() { _ = cmd.Process.Kill() })
	defer t.Stop()
	err := cmd.Wait()
	if !t.Stop() {
		return fmt.Errorf("still running after 20 s (killed): %v", err)
	}
	return err
}
