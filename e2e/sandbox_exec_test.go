package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// startWaiting starts a detached sandbox named name whose agent only
// waits.
func (e *supEnv) startWaiting(t *testing.T, name string) {
	t.Helper()
	if out := e.must(t, "sandbox", "run", "--detach", "--name", name, "--", "sleep", "600"); out != name+"\n" {
		t.Fatalf("--detach printed %q", out)
	}
}

// TestSandboxExecCLI drives `nemoclaw sandbox exec` into a detached
// sandbox, the CLI and the supervisor being separate processes: stdin
// and stdout both ways, the exit status, 127, signals passed on, and a
// killed CLI taking its command with it.
func TestSandboxExecCLI(t *testing.T) {
	requireSandboxKernel(t)
	asEachLauncher(t, sandboxExecCLI)
}

func sandboxExecCLI(t *testing.T, uid int) {
	e := newSupEnvAs(t, uid)
	e.startWaiting(t, "ex")
	cmd := e.cmd("sandbox", "exec", "ex", "--", "sh", "-c", "cat; id -u; echo to-err >&2; exit 3")
	cmd.Stdin = strings.NewReader("piped-in\n")
	out, errOut, code := runCmd(t, cmd)
	if code != 3 || out != "piped-in\n10001\n" || errOut != "to-err\n" {
		t.Fatalf("exec: code %d, stdout %q, stderr %q; want 3, %q, %q", code, out, errOut, "piped-in\n10001\n", "to-err\n")
	}
	for _, c := range []struct {
		name string
		args []string
		code int
		err  string
	}{
		{"missing command", []string{"no-such-command"}, 127, "not found"},
		{"not executable", []string{"/etc/hostname"}, 126, "/etc/hostname"},
		{"environment and directory", []string{"sh", "-c", `test "$X" = y && test "$PWD" = /tmp`}, 0, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := []string{"sandbox", "exec", "--env", "X=y", "--workdir", "/tmp", "ex", "--"}
			if !strings.HasPrefix(c.name, "environment") {
				args = []string{"sandbox", "exec", "ex", "--"}
			}
			_, errOut, code := e.nc(t, append(args, c.args...)...)
			if code != c.code || !strings.Contains(errOut, c.err) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", code, errOut, c.code, c.err)
			}
		})
	}

	// SIGINT to the CLI reaches the command (no TTY: Ctrl-C is a signal).
	sig := e.cmd("sandbox", "exec", "ex", "--", "sh", "-c", "trap 'echo got-int; exit 9' INT; echo ready; while :; do sleep 0.1; done")
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	sig.Stdout = pw
	if err := sig.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	t.Cleanup(func() { _ = sig.Process.Kill() })
	got := make([]byte, 64)
	n, _ := pr.Read(got)
	if string(got[:n]) != "ready\n" {
		t.Fatalf("signal command printed %q", got[:n])
	}
	_ = sig.Process.Signal(syscall.SIGINT)
	rest := readAll(t, pr)
	if err := sig.Wait(); exitCode(err) != 9 || rest != "got-int\n" {
		t.Fatalf("after SIGINT: %v, output %q; want exit 9 and got-int", err, rest)
	}

	// A CLI killed with SIGKILL takes its command with it.
	kill := e.cmd("sandbox", "exec", "ex", "--", "sleep", "4243")
	if err := kill.Start(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the exec'd sleep to start", func() bool { return len(findCmdline("sleep\x004243")) > 0 })
	_ = kill.Process.Kill()
	_ = kill.Wait()
	waitUntil(t, "the exec'd sleep to go with its killed CLI", func() bool { return len(findCmdline("sleep\x004243")) == 0 })

	// A stopped sandbox: a clear refusal, exit 1.
	e.must(t, "sandbox", "stop", "--stop-timeout", "1s", "ex")
	_, errOut, code = e.nc(t, "sandbox", "exec", "ex", "--", "true")
	if code != 1 || !strings.Contains(errOut, "not running") || !strings.Contains(errOut, "nemoclaw sandbox start ex") {
		t.Fatalf("exec into a stopped sandbox: exit %d, %q", code, errOut)
	}
	_, errOut, code = e.nc(t, "sandbox", "exec", "nothing-here", "--", "true")
	if code != 1 || !strings.Contains(errOut, "no such sandbox") {
		t.Fatalf("exec into no sandbox: exit %d, %q", code, errOut)
	}
}

// TestSandboxExecTTY runs `exec -t` and `connect` in a real pty: the
// command's terminal is the sandbox's own, the size follows the caller's,
// and connect's shell prompts and runs as the sandbox user.
func TestSandboxExecTTY(t *testing.T) {
	requireSandboxKernel(t)
	asEachLauncher(t, sandboxExecTTY)
}

func sandboxExecTTY(t *testing.T, uid int) {
	e := newSupEnvAs(t, uid)
	e.startWaiting(t, "tt")

	cmd, out := e.inPTY(t, "sandbox", "exec", "-t", "tt", "--", "sh", "-i")
	// A terminal (whose slave has no path in the sandbox: docs/sandbox.md,
	// "Streams"), the controlling one: job control works.
	out.send(t, "test -t 0 && test -t 1 && echo IS-$((2+2)); stty size; sleep 30 & jobs; kill %1; echo T-$((1+2))\n")
	out.expect(t, "IS-4")
	out.expect(t, "24 80")
	out.expect(t, "Running")
	out.expect(t, "T-3")
	ptyCtl(t, out.f, func(fd int) error {
		return unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, &unix.Winsize{Row: 40, Col: 100})
	})
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; !out.has("40 100"); i++ {
		if time.Now().After(deadline) {
			t.Fatalf("the exec'd terminal never saw 40x100:\n%s", out.text())
		}
		out.send(t, fmt.Sprintf("stty size; echo W%d-$((%d+1))\n", i, i))
		out.waitFor(fmt.Sprintf("W%d-%d", i, i+1), 500*time.Millisecond)
	}
	out.send(t, "exit 5\n")
	if err := cmd.Wait(); exitCode(err) != 5 {
		t.Fatalf("exec -t: %v, want exit 5\n%s", err, out.text())
	}

	cmd, out = e.inPTY(t, "sandbox", "connect", "tt")
	out.expect(t, "$ ")
	out.send(t, "id; echo C-$((2*3))\n")
	out.expect(t, "uid=10001")
	out.expect(t, "C-6")
	out.send(t, "exit\n")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("connect: %v\n%s", err, out.text())
	}

	// A killed exec -t hangs its command up, as a closed ssh session.
	cmd, out = e.inPTY(t, "sandbox", "exec", "-t", "tt", "--", "sh", "-c", "echo up-$((1+1)); exec sleep 4244")
	out.expect(t, "up-2")
	waitUntil(t, "the exec'd sleep to start", func() bool { return len(findCmdline("sleep\x004244")) > 0 })
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	waitUntil(t, "the exec'd sleep to be hung up with its killed CLI", func() bool { return len(findCmdline("sleep\x004244")) == 0 })
}

// inPTY starts nemoclaw ARGS on a new 24x80 terminal, its controlling one.
func (e *supEnv) inPTY(t *testing.T, args ...string) (*exec.Cmd, *ptyReader) {
	t.Helper()
	ptm, pts := openTestPTY(t, 24, 80)
	cmd := e.cmd(args...)
	cmd.Env = append(cmd.Env, "TERM=xterm")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = pts, pts, pts
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setsid, cmd.SysProcAttr.Setctty, cmd.SysProcAttr.Ctty = true, true, 0
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	pts.Close()
	return cmd, newPTYReader(ptm)
}

// exitCode is a finished command's exit status (-1: it did not exit).
func exitCode(err error) int {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	return -1
}

// readAll reads r to its end, failing the test after 20 s.
func readAll(t *testing.T, r *os.File) string {
	t.Helper()
	_ = r.SetReadDeadline(time.Now().Add(20 * time.Second))
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := r.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("output did not end: %q", b.String())
			}
			return b.String()
		}
	}
}

// waitUntil polls cond for 20 s, failing the test with what it waited for.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
