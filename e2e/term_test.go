package e2e

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestTerm drives `nemoclaw term` in a real pty: a detached sandbox's
// agent waits for approval, the dashboard shows the sandbox and the
// request, the approve key lets the request through, a resize redraws,
// and q exits 0 with the terminal restored.
func TestTerm(t *testing.T) {
	requireEgressTools(t)
	e := newEgressEnv(t)
	pol := e.writePolicy(t)
	l, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintf(w, "reached %s", r.URL.Path) })}
	go s.Serve(l)
	t.Cleanup(func() { s.Close() })
	port := l.Addr().(*net.TCPAddr).Port
	script := fmt.Sprintf("echo agent-started; curl -sS -m 60 http://127.0.0.2:%d/one > /sandbox/result.tmp 2>&1; mv /sandbox/result.tmp /sandbox/result; sleep 600", port)
	run := e.nemoclaw("sandbox", "run", "--detach", "--name", "tui", "--approvals", "--approval-timeout", "60s",
		"--workdir", e.workdir, "--policy", pol, "--", "/bin/sh", "-c", script)
	if out, errs, code := runCmd(t, run); code != 0 || out != "tui\n" {
		t.Fatalf("sandbox run --detach: exit %d %q %s", code, out, errs)
	}
	t.Cleanup(func() { _, _, _ = runCmd(t, e.nemoclaw("sandbox", "destroy", "--force", "tui")) })

	ptm, pts := openTestPTY(t, 24, 100)
	cmd := e.nemoclaw("term")
	cmd.Env = append(cmd.Env, "TERM=xterm")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = pts, pts, pts
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	pts.Close()
	p := newPTYReader(ptm)
	dest := "127.0.0.2:" + strconv.Itoa(port)
	for _, want := range []string{"(100x24)", "tui", "waiting for approval in tui: 1", dest, "/usr/bin/curl"} {
		if !p.waitFor(want, 30*time.Second) {
			t.Fatalf("the dashboard never showed %q:\n%s", want, p.text())
		}
	}
	p.send(t, "a")
	result := filepath.Join(e.workdir, "result")
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, err := os.ReadFile(result)
		if err == nil {
			if string(b) != "reached /one" {
				t.Fatalf("the approved request: %q", b)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the approved request never completed:\n%s", p.text())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !p.waitFor("approved", 10*time.Second) || !p.waitFor("allow", 10*time.Second) {
		t.Fatalf("the dashboard shows neither the decision nor the audit event:\n%s", p.text())
	}
	// c runs `sandbox connect` on the terminal (term's key reader paused:
	// the shell gets every keystroke) and comes back when it exits; l
	// follows the agent's log until Ctrl-C, which ends the child only.
	p.send(t, "c")
	p.expect(t, "$ ")
	p.send(t, "echo in-$((6*7))\r")
	p.expect(t, "in-42")
	p.send(t, "exit\r")
	p.expect(t, "back from sandbox connect tui")
	p.send(t, "l")
	p.expect(t, "agent-started") // logs runs: the Ctrl-C below reaches it
	p.send(t, "\x03")
	p.expect(t, "back from sandbox logs --follow tui")
	// The live policy shows the approval, marked; revoking it empties it.
	if o, se, code := runCmd(t, e.nemoclaw("policy", "show", "tui")); code != 0 || !strings.Contains(o, "# approvals granted while the sandbox runs") || !strings.Contains(o, "#   "+dest) {
		t.Fatalf("policy show tui: exit %d\n%s%s", code, o, se)
	}
	if o, se, code := runCmd(t, e.nemoclaw("policy", "approvals", "tui", "--revoke", dest)); code != 0 || !strings.Contains(o, "revoked "+dest) {
		t.Fatalf("--revoke: exit %d %s %s", code, o, se)
	}
	if o, se, code := runCmd(t, e.nemoclaw("policy", "show", "tui")); code != 0 || !strings.Contains(o, "# approvals: none granted") {
		t.Fatalf("policy show tui after revoke: exit %d\n%s%s", code, o, se)
	}
	// A resize reaches term as SIGWINCH and redraws at the new size.
	ptyCtl(t, ptm, func(fd int) error { return unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, &unix.Winsize{Row: 30, Col: 120}) })
	if !p.waitFor("(120x30)", 10*time.Second) {
		t.Fatalf("no redraw after the resize:\n%s", p.text())
	}
	p.send(t, "q")
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if code := exitCode(err); code != 0 {
			t.Fatalf("term exited %d:\n%s", code, p.text())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("q did not end term:\n%s", p.text())
	}
	// term has exited; what it wrote last may still be on its way out of
	// the pty (the test holds the other end open, so no EOF says when).
	ends := func() bool { return strings.HasSuffix(strings.TrimRight(p.text(), "\r\n"), "\x1b[?25h\x1b[?1049l") }
	for deadline := time.Now().Add(10 * time.Second); !ends() && time.Now().Before(deadline); {
		select {
		case <-p.more:
		case <-time.After(100 * time.Millisecond):
		}
	}
	all := p.text()
	if !ends() {
		t.Fatalf("term did not leave the alternate screen and show the cursor last: %q", all[max(0, len(all)-80):])
	}
	var tio *unix.Termios
	ptyCtl(t, ptm, func(fd int) (err error) { tio, err = unix.IoctlGetTermios(fd, unix.TCGETS); return err })
	if tio.Lflag&unix.ICANON == 0 || tio.Lflag&unix.ECHO == 0 {
		t.Fatalf("the terminal is left in raw mode: lflag %#x", tio.Lflag)
	}
}
