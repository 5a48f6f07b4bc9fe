package e2e

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestSandboxToolsWork is the positive side: allowed reads and writes work
// and python3, node, git, curl and a shell run normally inside the default
// policy (and its seccomp filter).
func TestSandboxToolsWork(t *testing.T) {
	requireSandboxKernel(t)
	r := newSandboxRun(t, -1)
	script := `set -e
echo data > /sandbox/file && cat /sandbox/file
echo tmp > /tmp/file && cat /tmp/file
head -c 8 /dev/urandom | wc -c
grep -c . /etc/hostname >/dev/null && echo etc-readable
python3 -c 'import json,os; print(json.dumps({"py": os.getcwd()}))'
node -e 'console.log("node", process.cwd())'
curl -sS file:///sandbox/file | sed 's/^/curl-/'
cd /sandbox && git init -q repo && cd repo && echo hi > a && git add a &&
  git -c user.email=a@b -c user.name=agent commit -qm init && git log --oneline | wc -l
echo "$(hostname) $(id -un) $HOME"
ps -e -o pid= | wc -l | tr -d ' '
`
	out, stderr, code := r.run(t, []string{"--name", "tools"}, "/bin/bash", "-c", script)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, stderr)
	}
	for _, want := range []string{"data\n", "tmp\n", "8\n", "etc-readable\n", `{"py": "/sandbox"}`, "node /sandbox\n", "curl-data\n", "1\ntools sandbox /sandbox\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s\nstderr:\n%s", want, out, stderr)
		}
	}
}

// TestSandboxExitAndSignals checks that the agent's exit status and a
// signal death come back as nemoclaw's exit code, and that orphans are
// reaped and killed with the sandbox.
func TestSandboxExitAndSignals(t *testing.T) {
	requireSandboxKernel(t)
	r := newSandboxRun(t, -1)
	tests := []struct {
		name string
		cmd  []string
		want int
	}{
		{"exit code", []string{"/bin/sh", "-c", "exit 42"}, 42},
		{"killed by signal", []string{"/bin/sh", "-c", "kill -TERM $$"}, 128 + int(syscall.SIGTERM)},
		{"orphans reaped", []string{"/bin/sh", "-c", "for i in 1 2 3; do (sleep 0 &) ; done; sleep 0.2; test -z \"$(ps -e -o stat= | grep Z)\""}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, code := r.run(t, nil, tc.cmd...)
			if code != tc.want {
				t.Fatalf("exit %d, want %d; stderr %s", code, tc.want, stderr)
			}
		})
	}
	// A background process must not outlive its sandbox.
	marker := fmt.Sprintf("%d.5", 3000+os.Getpid()%1000)
	_, stderr, code := r.run(t, nil, "/bin/sh", "-c", "sleep "+marker+" & exit 0")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if pids := findCmdline("sleep\x00" + marker); len(pids) > 0 {
		t.Fatalf("background sleep %v outlived its sandbox", pids)
	}
}

// TestSandboxExecStatus: a command that cannot be run exits as from a
// shell, 127 when it is not there and 126 when it cannot be executed (a
// plain file, a directory), with the reason on stderr.
func TestSandboxExecStatus(t *testing.T) {
	requireSandboxKernel(t)
	r := newSandboxRun(t, -1)
	for _, tc := range []struct {
		cmd, says string
		code      int
	}{
		{"nemoclaw-no-such-command", "executable file not found in the sandbox's PATH", 127},
		{"/usr/bin/nemoclaw-no-such-command", "No such file or directory", 127},
		{"/etc/passwd", "/etc/passwd: ", 126},
		{"/usr/bin", "Permission denied", 126},
		{"/bin/true", "", 0}, // the control
	} {
		t.Run(tc.cmd, func(t *testing.T) {
			_, stderr, code := r.run(t, nil, tc.cmd)
			if code != tc.code || !strings.Contains(stderr, tc.says) {
				t.Fatalf("exit %d, want %d with %q on stderr:\n%s", code, tc.code, tc.says, stderr)
			}
		})
	}
}

// TestSandboxStopTimeout sends SIGTERM to nemoclaw running an agent that
// ignores it: the sandbox is killed once --stop-timeout runs out, or at
// once with 0, and exits 137 saying why.
func TestSandboxStopTimeout(t *testing.T) {
	requireSandboxKernel(t)
	r := newSandboxRun(t, -1)
	for _, timeout := range []string{"300ms", "0"} {
		t.Run(timeout, func(t *testing.T) {
			cmd := r.startReady(t, []string{"--stop-timeout", timeout}, "trap '' TERM")
			_ = cmd.Process.Signal(syscall.SIGTERM)
			err := cmd.Wait()
			stderr := cmd.Stderr.(*bytes.Buffer).String()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 137 || !strings.Contains(stderr, "still running after SIGTERM and its stop timeout") {
				t.Fatalf("want exit 137 and the reason logged, got %v\n%s", err, stderr)
			}
		})
	}
}

// TestSandboxNameInUse starts a second run under the name of one still
// running: it is refused, naming the name and the directory, and leaves the
// first's control socket in place; once the first has ended the name is
// free again.
func TestSandboxNameInUse(t *testing.T) {
	requireSandboxKernel(t)
	r := newSandboxRun(t, -1)
	first := r.startReady(t, []string{"--name", "busy"}, "")
	sock := filepath.Join(r.home, "sandboxes", "busy", "control.sock")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(sock); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("first run's control socket: %v", err)
		}
	}
	_, stderr, code := r.run(t, []string{"--name", "busy"}, "/bin/true")
	if code != 1 || !strings.Contains(stderr, `name "busy" is in use`) || !strings.Contains(stderr, filepath.Join(r.home, "sandboxes", "busy")) {
		t.Fatalf("second run: exit %d, want 1 naming the name and its directory:\n%s", code, stderr)
	}
	if _, err := os.Stat(sock); err != nil {
		t.Fatalf("the refused run took the first's control socket: %v", err)
	}
	_ = first.Process.Signal(syscall.SIGTERM)
	if err := first.Wait(); err == nil {
		t.Fatal("first run: want the agent's death by SIGTERM in its exit status")
	}
	if _, stderr, code := r.run(t, []string{"--name", "busy"}, "/bin/true"); code != 0 {
		t.Fatalf("after the first ended: exit %d\n%s", code, stderr)
	}
}

// TestSandboxClosedStdStreams starts nemoclaw with stdin, stdout or stderr
// closed: the agent must find /dev/null there, never a descriptor the
// launcher opened since (it was the socket to the sandbox's own init).
func TestSandboxClosedStdStreams(t *testing.T) {
	requireSandboxKernel(t)
	r := newSandboxRun(t, -1)
	for fd := 0; fd < 3; fd++ {
		t.Run(fmt.Sprint(fd), func(t *testing.T) {
			out := fmt.Sprintf("fds-%d", fd)
			// The shell's own descriptors, the ones the init gave it,
			// read from a command substitution: dash redirects a
			// command's output in the shell itself.
			agent := fmt.Sprintf(`fds=$(readlink /proc/$$/fd/0 /proc/$$/fd/1 /proc/$$/fd/2); echo "$fds" > /sandbox/%s`, out)
			cmd := exec.Command("/bin/sh", "-c", fmt.Sprintf(`exec "$0" sandbox run --workdir "$1" -- /bin/sh -c "$2" %d>&-`, fd),
				Bin("nemoclaw"), r.workdir, agent)
			cmd.Env = []string{"NEMOCLAW_HOME=" + r.home}
			if _, stderr, code := runCmd(t, cmd); code != 0 {
				t.Fatalf("exit %d\n%s", code, stderr)
			}
			b, err := os.ReadFile(filepath.Join(r.workdir, out))
			if err != nil {
				t.Fatal(err)
			}
			got := strings.Split(strings.TrimSpace(string(b)), "\n")
			if len(got) != 3 || got[fd] != "/dev/null" {
				t.Fatalf("agent's 0, 1, 2: %q; want /dev/null as %d", got, fd)
			}
			for i, g := range got {
				if strings.HasPrefix(g, "socket:") {
					t.Errorf("agent's fd %d is a socket of the launcher's: %s", i, g)
				}
			}
		})
	}
}

// TestSandboxForwardsSignals sends SIGTERM, SIGINT and SIGHUP to nemoclaw
// and expects the agent to get each (it traps them and exits 9).
func TestSandboxForwardsSignals(t *testing.T) {
	requireSandboxKernel(t)
	r := newSandboxRun(t, -1)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP} {
		t.Run(unix.SignalName(sig), func(t *testing.T) {
			cmd := r.startReady(t, nil, "trap 'exit 9' TERM INT HUP")
			_ = cmd.Process.Signal(sig)
			err := cmd.Wait()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 9 {
				t.Fatalf("want exit 9 from the agent's %s trap, got %v", unix.SignalName(sig), err)
			}
		})
	}
}

// startReady starts a run (with flags) of a shell agent that runs setup,
// prints "ready" and loops until a signal ends it, and returns once the
// agent is ready. A run stuck for 30 s is killed, so that it fails its test
// rather than hanging the suite; so is one a failed test leaves running.
func (r *sandboxRun) startReady(t *testing.T, flags []string, setup string) *exec.Cmd {
	t.Helper()
	args := append([]string{"sandbox", "run", "--workdir", r.workdir}, flags...)
	args = append(args, "--", "/bin/sh", "-c", setup+"\necho ready; while :; do sleep 0.05; done")
	cmd := exec.Command(Bin("nemoclaw"), args...)
	cmd.Env = []string{"NEMOCLAW_HOME=" + r.home}
	cmd.Stderr = new(bytes.Buffer) // complete once Wait returns
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stuck := time.AfterFunc(30*time.Second, func() { _ = cmd.Process.Kill() })
	t.Cleanup(func() {
		stuck.Stop()
		_ = cmd.Process.Kill() // after a failed check; no-op once waited for
	})
	buf := make([]byte, 6)
	if _, err := io.ReadFull(stdout, buf); err != nil || string(buf) != "ready\n" {
		t.Fatalf("agent did not start: %q %v", buf, err)
	}
	return cmd
}

// findCmdline returns host pids whose cmdline starts with prefix.
func findCmdline(prefix string) []string {
	ents, _ := os.ReadDir("/proc")
	var pids []string
	for _, e := range ents {
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && bytes.HasPrefix(b, []byte(prefix)) {
			pids = append(pids, e.Name())
		}
	}
	return pids
}

// TestSandboxInteractiveShell drives `nemoclaw sandbox run -- bash` through
// a pseudo-terminal: prompt, job control, window size changes and exit
// status all behave as in a real terminal.
func TestSandboxInteractiveShell(t *testing.T) {
	requireSandboxKernel(t)
	asEachLauncher(t, interactiveShell)
}

func interactiveShell(t *testing.T, uid int) {
	r := newSandboxRun(t, uid)
	ptm, pts := openTestPTY(t, 24, 80)
	cmd := exec.Command(Bin("nemoclaw"), "sandbox", "run", "--workdir", r.workdir, "--", "/bin/bash", "--norc", "--noprofile", "-i")
	cmd.Env = []string{"NEMOCLAW_HOME=" + r.home, "TERM=xterm"}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = pts, pts, pts
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if uid >= 0 {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// A failed check must not leave the shell (and the test binary's
	// wait for it) behind.
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	pts.Close()
	out := newPTYReader(ptm)
	out.send(t, "stty size; echo S1-$((6*7))\n")
	out.expect(t, "24 80")
	out.expect(t, "S1-42")
	// Resize the outer terminal; nemoclaw passes the size inward.
	ptyCtl(t, ptm, func(fd int) error {
		return unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, &unix.Winsize{Row: 40, Col: 100})
	})
	// The size reaches the inner pty asynchronously (SIGWINCH): ask again,
	// at most every half second so a slow shell is never flooded, until
	// it is seen.
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; !out.has("40 100"); i++ {
		if time.Now().After(deadline) {
			// Say which side failed: the outer size, and whether a
			// second SIGWINCH gets through.
			var outer *unix.Winsize
			ptyCtl(t, ptm, func(fd int) (err error) { outer, err = unix.IoctlGetWinsize(fd, unix.TIOCGWINSZ); return err })
			_ = cmd.Process.Signal(syscall.SIGWINCH)
			out.send(t, "stty size; echo AGAIN-$((1+1))\n")
			out.waitFor("AGAIN-2", 5*time.Second)
			t.Fatalf("inner terminal never saw 40x100 (outer %dx%d; after a second SIGWINCH: %v):\n%s",
				outer.Row, outer.Col, strings.Contains(out.text()[strings.LastIndex(out.text(), "AGAIN-$"):], "40 100"), out.text())
		}
		out.send(t, fmt.Sprintf("stty size; echo W%d-$((%d+1))\n", i, i))
		out.waitFor(fmt.Sprintf("W%d-%d", i, i+1), 500*time.Millisecond)
	}
	// Job control: a background job, listed, then killed by job number.
	out.send(t, "sleep 30 &\n")
	out.send(t, "jobs; echo J-$((1+1))\n")
	out.expect(t, "Running")
	out.expect(t, "J-2")
	// Still in its box: no host root, no network.
	out.send(t, "cat /etc/shadow 2>&1 | grep -q denied && echo D-OK; (exec 3<>/dev/tcp/1.1.1.1/80) 2>&1 | grep -q unreachable && echo N-OK; echo B-$((5*5))\n")
	out.expect(t, "D-OK\r\nN-OK\r\nB-25")
	out.send(t, "kill %1; wait; test -t 0 && echo TTY-$((3+4)); exit 7\n")
	out.expect(t, "TTY-7")
	err := cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 7 {
		t.Fatalf("want exit 7, got %v\n%s", err, out.text())
	}
}

// TestSandboxTerminalHangup closes the caller's terminal under an agent
// that is busy writing to its own: the sandbox must end as a program on a
// hung-up terminal would, through its SIGHUP trap or, with SIGHUP ignored,
// on the EIO of its next write, rather than stay behind with the agent
// blocked in write. An agent that writes nothing, under a nemoclaw that
// gets no SIGHUP of its own, learns it through its input's end.
func TestSandboxTerminalHangup(t *testing.T) {
	requireSandboxKernel(t)
	r := newSandboxRun(t, -1)
	for _, tc := range []struct {
		name, trap, loop string
		code             int
		ctty             bool // the terminal is nemoclaw's controlling one: the kernel sends it SIGHUP
	}{
		{"trap", "trap 'exit 5' HUP", "echo output-nobody-reads", 5, true}, // write errors ignored: the trap decides
		{"ignored", "trap '' HUP", "echo output-nobody-reads || exit 6", 6, true},
		// Nothing to write, and no SIGHUP for nemoclaw from the kernel:
		// its input's end is all that says the terminal is gone.
		{"idle, not the controlling terminal", "trap 'exit 5' HUP", "sleep 0.05", 5, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ptm, pts := openTestPTY(t, 24, 80)
			cmd := exec.Command(Bin("nemoclaw"), "sandbox", "run", "--tty", "--workdir", r.workdir, "--",
				"/bin/bash", "-c", tc.trap+"; echo ready; while :; do "+tc.loop+"; done")
			cmd.Env = []string{"NEMOCLAW_HOME=" + r.home}
			cmd.Stdin, cmd.Stdout, cmd.Stderr = pts, pts, pts
			cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: tc.ctty, Ctty: 0}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = cmd.Process.Kill() })
			pts.Close()
			newPTYReader(ptm).expect(t, "ready")
			ptm.Close()
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != tc.code {
					t.Fatalf("want exit %d, got %v", tc.code, err)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("the sandbox outlived its terminal by 20 s")
			}
		})
	}
}

// TestSandboxTTYInputEnds gives a --tty run input that is not a terminal
// (a pipe): when it ends, the agent must read an end of file, whether the
// input ended on a newline, mid-line or held nothing, instead of waiting
// forever.
func TestSandboxTTYInputEnds(t *testing.T) {
	requireSandboxKernel(t)
	r := newSandboxRun(t, -1)
	for name, in := range map[string]string{"lines": "one\ntwo\n", "unfinished line": "one\ntw", "empty": ""} {
		t.Run(name, func(t *testing.T) {
			cmd := exec.Command(Bin("nemoclaw"), "sandbox", "run", "--tty", "--workdir", r.workdir, "--",
				"/bin/sh", "-c", "wc -c; echo EOF-SEEN")
			cmd.Env = []string{"NEMOCLAW_HOME=" + r.home}
			var out bytes.Buffer
			cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(in), &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			stuck := time.AfterFunc(20*time.Second, func() { _ = cmd.Process.Kill() })
			defer stuck.Stop()
			if err := cmd.Wait(); err != nil {
				t.Fatalf("run: %v (killed after 20 s if the agent never saw the end of its input)\n%s", err, out.String())
			}
			// The terminal's echo comes first; wc counts what it read
			// (the unfinished line too, the newline the terminal adds
			// to a line not being there).
			want := fmt.Sprintf("%d\r\nEOF-SEEN\r\n", len(in))
			if !strings.HasSuffix(out.String(), want) {
				t.Fatalf("output %q, want it to end with %q", out.String(), want)
			}
		})
	}
}

// openTestPTY opens a pseudo-terminal of rows x cols: its master, served
// by the netpoller, and its slave.
func openTestPTY(t *testing.T, rows, cols uint16) (*os.File, *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	var n int
	ptyCtl(t, m, func(fd int) (err error) {
		if err = unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err == nil {
			if err = unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols}); err == nil {
				n, err = unix.IoctlGetInt(fd, unix.TIOCGPTN)
			}
		}
		return err
	})
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	return m, s
}

// ptyCtl runs f on f's descriptor without File.Fd, which would switch the
// file to blocking mode: a test's Close of the master must not wait for a
// reader blocked in read(2), or a terminal with nothing to say never
// hangs up.
func ptyCtl(t *testing.T, f *os.File, ctl func(fd int) error) {
	t.Helper()
	rc, err := f.SyscallConn()
	if err == nil {
		cerr := rc.Control(func(fd uintptr) { err = ctl(int(fd)) })
		if err == nil {
			err = cerr
		}
	}
	if err != nil {
		t.Fatal(err)
	}
}

// ptyReader accumulates a pty's output for expect-style checks. Its
// reader never blocks on the test: a test that stops reading must not stall
// the program under test's output, and through it the program's input.
type ptyReader struct {
	f    *os.File
	mu   sync.Mutex
	all  bytes.Buffer
	done bool          // the terminal has closed
	more chan struct{} // a token after each read: there is something new
	pos  int           // where the next expect starts looking
}

func newPTYReader(f *os.File) *ptyReader {
	p := &ptyReader{f: f, more: make(chan struct{}, 1)}
	go p.loop()
	return p
}

func (p *ptyReader) loop() {
	b := make([]byte, 4096)
	for {
		n, err := p.f.Read(b)
		p.mu.Lock()
		p.all.Write(b[:n])
		p.done = err != nil
		p.mu.Unlock()
		select {
		case p.more <- struct{}{}:
		default:
		}
		if err != nil {
			return
		}
	}
}

// text is everything read so far.
func (p *ptyReader) text() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.all.String()
}

func (p *ptyReader) has(s string) bool { return strings.Contains(p.text(), s) }

// send types s, failing (with the transcript) if the terminal takes more
// than 10 s to accept it.
func (p *ptyReader) send(t *testing.T, s string) {
	t.Helper()
	_ = p.f.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := p.f.WriteString(s); err != nil {
		t.Fatalf("type %q: %v\n%s", s, err, p.text())
	}
}

// waitFor waits at most d for s to appear anywhere in the output.
func (p *ptyReader) waitFor(s string, d time.Duration) bool {
	timeout := time.After(d)
	for !p.has(s) {
		select {
		case <-p.more:
		case <-timeout:
			return false
		}
	}
	return true
}

// expect waits (bounded, so a broken shell cannot hang the suite) until s
// appears after the previous match.
func (p *ptyReader) expect(t *testing.T, s string) {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		p.mu.Lock()
		all, done := p.all.String(), p.done
		p.mu.Unlock()
		if i := strings.Index(all[p.pos:], s); i >= 0 {
			p.pos += i + len(s)
			return
		}
		if done {
			t.Fatalf("terminal closed before %q:\n%s", s, all)
		}
		select {
		case <-p.more:
		case <-timeout:
			t.Fatalf("no %q on the terminal:\n%s", s, all)
		}
	}
}

// termState is what an agent could change of a terminal and leave so.
type termState struct {
	termios unix.Termios
	ws      unix.Winsize
	ldisc   int
	excl    int
	inq     int // bytes waiting to be read: input pushed with TIOCSTI
}

func readTermState(f *os.File) (termState, error) {
	var s termState
	rc, err := f.SyscallConn()
	if err != nil {
		return s, err
	}
	var cerr error
	err = rc.Control(func(ufd uintptr) { cerr = s.read(int(ufd)) })
	if err == nil {
		err = cerr
	}
	return s, err
}

func (s *termState) read(fd int) error {
	tio, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return fmt.Errorf("TCGETS: %w", err)
	}
	ws, err := unix.IoctlGetWinsize(fd, unix.TIOCGWINSZ)
	if err != nil {
		return fmt.Errorf("TIOCGWINSZ: %w", err)
	}
	s.termios, s.ws = *tio, *ws
	if s.ldisc, err = unix.IoctlGetInt(fd, unix.TIOCGETD); err != nil {
		return fmt.Errorf("TIOCGETD: %w", err)
	}
	if s.excl, err = unix.IoctlGetInt(fd, unix.TIOCGEXCL); err != nil {
		return fmt.Errorf("TIOCGEXCL: %w", err)
	}
	if s.inq, err = unix.IoctlGetInt(fd, unix.TIOCINQ); err != nil {
		return fmt.Errorf("TIOCINQ: %w", err)
	}
	return nil
}

// TestSandboxCallerTerminalUntouched hands the agent a terminal the test
// holds, which is nobody's controlling terminal, on its standard streams
// without --tty (all three with --no-tty; stdin only, with stdout piped;
// stdout and stderr only): the agent must hold no descriptor of it, so it
// can neither take it exclusively, nor change its line discipline, modes
// or size, nor make it its controlling terminal and push input into it,
// and the terminal must be as it was after the run.
func TestSandboxCallerTerminalUntouched(t *testing.T) {
	requireSandboxKernel(t)
	// What the agent must see on a relayed stream (a pipe): no terminal;
	// TIOCSETD and TIOCSTI are refused by seccomp before that.
	wantOnPipe := map[string]string{
		"tcgets": "ENOTTY", "tiocexcl": "ENOTTY", "tiocsetd": "EPERM", "tcsets": "ENOTTY",
		"tiocswinsz": "ENOTTY", "tiocsctty": "ENOTTY", "tiocsti": "EPERM",
	}
	asEachLauncher(t, func(t *testing.T, uid int) {
		r := newSandboxRun(t, uid)
		for _, tc := range []struct {
			name  string
			flags []string
			onPTY [3]bool // which of stdin, stdout, stderr the terminal is
		}{
			{"all three, --no-tty", []string{"--no-tty"}, [3]bool{true, true, true}},
			{"stdin, stdout piped", nil, [3]bool{true, false, false}},
			{"stdout and stderr", nil, [3]bool{false, true, true}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				ptm, pts := openTestPTY(t, 24, 80)
				defer pts.Close()
				out := newPTYReader(ptm)
				before, err := readTermState(pts)
				if err != nil {
					t.Fatal(err)
				}
				results := "tty-results"
				_ = os.Remove(filepath.Join(r.workdir, results))
				args := append([]string{"sandbox", "run", "--workdir", r.workdir}, tc.flags...)
				cmd := exec.Command(Bin("nemoclaw"), append(args, "--", "/sandbox/attack", "tty", "/sandbox/"+results)...)
				cmd.Env = []string{"NEMOCLAW_HOME=" + r.home}
				var piped bytes.Buffer
				streams := []*io.Writer{nil, &cmd.Stdout, &cmd.Stderr}
				for i, on := range tc.onPTY {
					switch {
					case i == 0 && on:
						cmd.Stdin = pts
					case on:
						*streams[i] = pts
					case i > 0:
						*streams[i] = &piped
					}
				}
				// A new session with no controlling terminal: the
				// test's terminal is nobody's, which is what lets
				// TIOCSCTTY take it.
				cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
				if uid >= 0 {
					cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}
				}
				stuck := time.AfterFunc(30*time.Second, func() { _ = cmd.Process.Kill() })
				defer stuck.Stop()
				if err := cmd.Run(); err != nil {
					t.Fatalf("run: %v\npiped: %s\nterminal: %q", err, piped.String(), out.text())
				}
				b, err := os.ReadFile(filepath.Join(r.workdir, results))
				if err != nil {
					t.Fatalf("no results: %v\npiped: %s\nterminal: %q", err, piped.String(), out.text())
				}
				got := parseResults(string(b))
				for fd, on := range tc.onPTY {
					if !on {
						continue
					}
					for what, want := range wantOnPipe {
						name := fmt.Sprintf("tty_fd%d_%s", fd, what)
						if got[name] != want {
							t.Errorf("%s: got %q, want %q (the agent must hold a pipe, not the caller's terminal)", name, got[name], want)
						}
					}
				}
				if after, err := readTermState(pts); err != nil {
					t.Errorf("the caller's terminal is broken after the run: %v", err)
				} else if after != before {
					t.Errorf("the caller's terminal changed under the agent:\nbefore %+v\nafter  %+v", before, after)
				}
			})
		}
	})
}

// TestSandboxRelayedTerminal: without --tty the caller's terminal still
// works through the relay: a line typed reaches the agent, its output the
// terminal, ^D ends its input, and once it has exited the relay reads
// nothing more (what is typed then stays for the caller's shell).
func TestSandboxRelayedTerminal(t *testing.T) {
	requireSandboxKernel(t)
	r := newSandboxRun(t, -1)
	ptm, pts := openTestPTY(t, 24, 80)
	defer pts.Close()
	cmd := exec.Command(Bin("nemoclaw"), "sandbox", "run", "--no-tty", "--workdir", r.workdir, "--",
		"/bin/sh", "-c", "test -t 0 || echo no-tty; read x; echo got-$x; cat; echo cat-done; exit 3")
	cmd.Env = []string{"NEMOCLAW_HOME=" + r.home}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = pts, pts, pts
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	out := newPTYReader(ptm)
	out.expect(t, "no-tty")
	out.send(t, "hello\n")
	out.expect(t, "got-hello")
	out.send(t, "line\n\x04") // ^D at the start of a line: end of file
	out.expect(t, "cat-done")
	err := cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
		t.Fatalf("want exit 3, got %v\n%s", err, out.text())
	}
	out.send(t, "for-the-shell\n")
	var inq int
	deadline := time.Now().Add(10 * time.Second)
	for inq == 0 && time.Now().Before(deadline) {
		ptyCtl(t, pts, func(fd int) (err error) { inq, err = unix.IoctlGetInt(fd, unix.TIOCINQ); return err })
		time.Sleep(10 * time.Millisecond)
	}
	if inq != len("for-the-shell\n") {
		t.Fatalf("%d bytes wait on the terminal after the run, want the %d typed then\n%s", inq, len("for-the-shell\n"), out.text())
	}
}
