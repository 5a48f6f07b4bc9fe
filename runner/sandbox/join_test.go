package sandbox

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nemoclaw/nemoclaw/runner/policy"
)

// startAgent starts a sandbox whose agent runs argv, for Exec to join;
// its output goes to out (nil: discarded). Closed with the test.
func startAgent(t *testing.T, out io.Writer, argv ...string) *Sandbox {
	t.Helper()
	needKernel(t)
	sb, err := Start(context.Background(), Config{Policy: testPolicy(), Home: t.TempDir(), Command: argv, Stdout: out})
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() { sb.Close() })
	return sb
}

// execRun runs cfg in sb and returns its exit code and output.
func execRun(t *testing.T, sb *Sandbox, cfg ExecConfig) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	cfg.Stdout, cfg.Stderr = &out, &errb
	p, err := sb.Exec(context.Background(), cfg)
	if err != nil {
		t.Fatalf("exec %q: %v", cfg.Command, err)
	}
	code, err := p.Wait()
	if err != nil {
		t.Fatalf("wait %q: %v", cfg.Command, err)
	}
	return code, out.String(), errb.String()
}

// TestExecStreams: input reaches a joined process and its stdout and
// stderr come back apart; its environment is the agent's plus Env, never
// the caller's; it starts in Dir.
func TestExecStreams(t *testing.T) {
	sb := startAgent(t, nil, "sleep", "1000")
	t.Setenv("NEMOCLAW_TEST_CALLER_SECRET", "leak")
	for _, tc := range []struct {
		name     string
		cfg      ExecConfig
		out, err string
	}{
		{"stdin to stdout", ExecConfig{Command: []string{"cat"}, Stdin: strings.NewReader("hello\nworld\n")}, "hello\nworld\n", ""},
		{"stdout and stderr apart", ExecConfig{Command: []string{"sh", "-c", "echo out; echo err >&2"}}, "out\n", "err\n"},
		{"no stdin", ExecConfig{Command: []string{"cat"}}, "", ""},
		{"environment", ExecConfig{Command: []string{"sh", "-c", `echo "$NEMOCLAW_SANDBOX $EXTRA $TERM ${NEMOCLAW_TEST_CALLER_SECRET:-none}"`}, Env: []string{"EXTRA=x"}},
			sb.Name() + " x dumb none\n", ""},
		{"dir", ExecConfig{Command: []string{"pwd"}, Dir: "/tmp"}, "/tmp\n", ""},
		{"default dir", ExecConfig{Command: []string{"pwd"}}, Workdir + "\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := execRun(t, sb, tc.cfg)
			if code != 0 || out != tc.out || errs != tc.err {
				t.Errorf("got code %d, stdout %q, stderr %q; want 0, %q, %q", code, out, errs, tc.out, tc.err)
			}
		})
	}
}

// TestExecFiles: the caller's files are copied through pipes, as the
// agent's are; a pipe is handed over as it is.
func TestExecFiles(t *testing.T) {
	sb := startAgent(t, nil, "sleep", "1000")
	log, err := os.CreateTemp(t.TempDir(), "log")
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	p, err := sb.Exec(context.Background(), ExecConfig{
		Command: []string{"sh", "-c", "echo to-log; echo to-pipe >&2; ls -l /proc/self/fd/1 /proc/self/fd/2 | grep -c pipe: >&2"},
		Stdout:  log, Stderr: w,
	})
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	if code, err := p.Wait(); code != 0 || err != nil {
		t.Fatalf("wait: %d %v", code, err)
	}
	got, _ := io.ReadAll(r)
	data, _ := os.ReadFile(log.Name())
	if string(data) != "to-log\n" || string(got) != "to-pipe\n2\n" {
		t.Errorf("log %q, pipe %q; want %q, %q (both streams pipes)", data, got, "to-log\n", "to-pipe\n2\n")
	}
}

// TestExecExitStatus: a joined process's exit status is reported as the
// agent's is, and a command that cannot run fails Exec as the agent's
// fails Start (ExecStatus 127 or 126).
func TestExecExitStatus(t *testing.T) {
	sb := startAgent(t, nil, "sleep", "1000")
	for _, tc := range []struct {
		name       string
		argv       []string
		code, exec int
	}{
		{"exit 0", []string{"true"}, 0, 0},
		{"exit 3", []string{"sh", "-c", "exit 3"}, 3, 0},
		{"killed by SIGTERM", []string{"sh", "-c", "kill -TERM $$"}, 128 + 15, 0},
		{"not found", []string{"no-such-command"}, 0, 127},
		{"not found by path", []string{"/sandbox/no-such"}, 0, 127},
		{"not executable", []string{"/etc/passwd"}, 0, 126},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := sb.Exec(context.Background(), ExecConfig{Command: tc.argv})
			if tc.exec != 0 {
				if got := ExecStatus(err); got != tc.exec {
					t.Fatalf("exec: %v (ExecStatus %d), want ExecStatus %d", err, got, tc.exec)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if code, err := p.Wait(); code != tc.code || err != nil {
				t.Errorf("wait: %d %v, want %d", code, err, tc.code)
			}
		})
	}
}

// TestExecRefused: malformed requests are refused before reaching the init.
func TestExecRefused(t *testing.T) {
	sb := startAgent(t, nil, "sleep", "1000")
	for _, cfg := range []ExecConfig{
		{},
		{Command: []string{""}},
		{Command: []string{"true"}, Dir: "relative"},
		{Command: []string{"true"}, Env: []string{"NOEQUALS"}},
		{Command: []string{"true"}, Env: []string{"=x"}},
		{Command: []string{"a\x00b"}},
		{Command: []string{"true", strings.Repeat("x", maxJoinRequest)}},
	} {
		if _, err := sb.Exec(context.Background(), cfg); err == nil {
			t.Errorf("exec %q (dir %q, env %q): no error", cfg.Command, cfg.Dir, cfg.Env)
		}
	}
	// The sandbox still serves requests.
	if code, _, _ := execRun(t, sb, ExecConfig{Command: []string{"true"}}); code != 0 {
		t.Fatalf("true: exit %d", code)
	}
}

// TestExecSignal: Signal reaches the joined process's process group.
func TestExecSignal(t *testing.T) {
	sb := startAgent(t, nil, "sleep", "1000")
	var out bytes.Buffer
	p, err := sb.Exec(context.Background(), ExecConfig{Command: []string{"sh", "-c", "sleep 1000 & wait"}, Stdout: &out})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code, err := p.Wait(); code != 128+15 || err != nil {
		t.Fatalf("wait: %d %v, want 143", code, err)
	}
	if err := p.Signal(syscall.SIGTERM); !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("signal after exit: %v, want os.ErrProcessDone", err)
	}
	// The background sleep got it too: once the init has reaped it, the
	// agent's is the only sleep left.
	for {
		code, comms, _ := execRun(t, sb, ExecConfig{Command: []string{"sh", "-c", "cat /proc/[0-9]*/comm 2>/dev/null; true"}}) // one may go meanwhile
		if code != 0 {
			t.Fatalf("list processes: exit %d", code)
		}
		if strings.Count(comms, "sleep\n") == 1 {
			break
		}
	}
}

// TestExecSameRestrictions: a joined process has the agent's credentials,
// capabilities, no_new_privs, seccomp mode and descriptors; and its own
// Landlock domain, which keeps it and the agent from signalling each other.
func TestExecSameRestrictions(t *testing.T) {
	const show = `grep -E '^(Uid|Gid|Groups|Cap[A-Za-z]+|NoNewPrivs|Seccomp|Seccomp_filters):' /proc/self/status; cat /proc/self/cgroup; ulimit -a`
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	sb := startAgent(t, w, "sh", "-c", show+"; echo END; echo $$; exec sleep 1000")
	w.Close()
	var agent strings.Builder
	sc := bufio.NewScanner(r)
	for sc.Scan() && sc.Text() != "END" {
		agent.WriteString(sc.Text() + "\n")
	}
	sc.Scan()
	agentPid := sc.Text()
	r.Close()
	code, joined, _ := execRun(t, sb, ExecConfig{Command: []string{"sh", "-c", show}})
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	if joined != agent.String() {
		t.Errorf("joined process:\n%s\nagent:\n%s", joined, agent.String())
	}
	// Only its streams reach it: ls's own directory is 3.
	if code, fds, _ := execRun(t, sb, ExecConfig{Command: []string{"ls", "/proc/self/fd"}}); code != 0 || fds != "0\n1\n2\n3\n" {
		t.Errorf("descriptors of a joined process: %q, want 0-2 (and ls's 3)", fds)
	}
	if !strings.Contains(joined, "NoNewPrivs:\t1") || !strings.Contains(joined, "Seccomp:\t2") || !regexp.MustCompile(`CapEff:\t0+\n`).MatchString(joined) {
		t.Errorf("joined process not restricted:\n%s", joined)
	}
	// The joined shell may not signal the agent (Landlock signal scoping:
	// another domain) nor the init, nor open the agent's descriptors
	// through /proc (Landlock's ptrace check: the same uid, but another
	// domain).
	code, out, _ := execRun(t, sb, ExecConfig{Command: []string{"sh", "-c", "kill -0 " + agentPid + " 2>&1; kill -0 1 2>&1; cat /proc/" + agentPid + "/fd/0 2>&1; true"}})
	if code != 0 || strings.Count(out, "ermitted") != 2 || !strings.Contains(out, "Permission denied") {
		t.Errorf("signals to the agent and the init, the agent's descriptors: %q, want all refused", out)
	}
}

// TestExecConcurrent: many joined processes at once, each with its own
// streams and status.
func TestExecConcurrent(t *testing.T) {
	sb := startAgent(t, nil, "sleep", "1000")
	const n = 40
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out bytes.Buffer
			p, err := sb.Exec(context.Background(), ExecConfig{Command: []string{"sh", "-c", fmt.Sprintf("echo %d; read x; echo $x; exit %d", i, i%7)},
				Stdin: strings.NewReader(fmt.Sprintf("in%d\n", i)), Stdout: &out})
			if err != nil {
				errs <- err
				return
			}
			code, err := p.Wait()
			if want := fmt.Sprintf("%d\nin%d\n", i, i); code != i%7 || err != nil || out.String() != want {
				errs <- fmt.Errorf("exec %d: code %d (%v), output %q; want %d, %q", i, code, err, out.String(), i%7, want)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestExecAfterAgentExit: once the agent has exited, Exec is refused with
// ErrStopped; a joined process still running when it exits is killed.
func TestExecAfterAgentExit(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// The agent exits when its input ends.
	sb := func() *Sandbox {
		needKernel(t)
		sb, err := Start(context.Background(), Config{Policy: testPolicy(), Home: t.TempDir(), Command: []string{"cat"}, Stdin: r})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sb.Close() })
		return sb
	}()
	p, err := sb.Exec(context.Background(), ExecConfig{Command: []string{"sleep", "1000"}})
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	if code, err := sb.Wait(); code != 0 || err != nil {
		t.Fatalf("agent: %d %v", code, err)
	}
	if code, err := p.Wait(); code != 128+9 || err != nil {
		t.Errorf("joined process: %d %v, want 137 (killed with the sandbox)", code, err)
	}
	_, err = sb.Exec(context.Background(), ExecConfig{Command: []string{"true"}})
	if !errors.Is(err, ErrStopped) {
		t.Fatalf("exec after the agent's exit: %v, want ErrStopped", err)
	}
	var se *StepError
	if !errors.As(err, &se) || se.Hint == "" || !strings.Contains(err.Error(), sb.Name()) {
		t.Errorf("refusal %v: want a StepError naming the sandbox, with a hint", err)
	}
}

// ttyLog collects a terminal's output in the background.
type ttyLog struct {
	mu   sync.Mutex
	text string
	from int // where the next wait looks from
	err  error
}

func newTTYLog(r io.Reader) *ttyLog {
	l := &ttyLog{}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := r.Read(buf)
			l.mu.Lock()
			l.text += string(buf[:n])
			l.err = err
			l.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return l
}

// waitFor waits until want appears after the last match, for at most d
// (0: until the test's own timeout), and reports whether it did.
func (l *ttyLog) waitFor(t *testing.T, want string, d time.Duration) bool {
	t.Helper()
	end := time.Now().Add(d)
	for {
		l.mu.Lock()
		i := strings.Index(l.text[l.from:], want)
		if i >= 0 {
			l.from += i + len(want)
		}
		text, err := l.text, l.err
		l.mu.Unlock()
		switch {
		case i >= 0:
			return true
		case err != nil:
			t.Fatalf("waiting for %q: %v; output:\n%s", want, err, text)
		case d > 0 && time.Now().After(end):
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestExecTTY: a joined interactive bash on a pseudo-terminal of its own,
// as `connect` runs it: it is its controlling terminal (job control), a
// resize reaches it, and its exit status comes back.
func TestExecTTY(t *testing.T) {
	sb := startAgent(t, nil, "sleep", "1000")
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer inW.Close()
	p, err := sb.Exec(context.Background(), ExecConfig{Command: []string{"bash", "--norc", "--noprofile", "-i"}, TTY: true,
		WindowSize: &WindowSize{Rows: 24, Cols: 80}, Stdin: inR, Stdout: outW})
	// This process copies them: they stay open until the end.
	defer inR.Close()
	defer outW.Close()
	if err != nil {
		t.Fatal(err)
	}
	out := newTTYLog(outR)
	say := func(s string) {
		if _, err := inW.WriteString(s + "\n"); err != nil {
			t.Fatal(err)
		}
	}
	// Markers are computed, so that the terminal's echo of the command
	// does not match them.
	say("stty size; echo $TERM; echo $((40+2))X")
	out.waitFor(t, "24 80", 0)
	out.waitFor(t, "xterm-256color", 0)
	out.waitFor(t, "42X", 0)
	if err := p.Resize(WindowSize{Rows: 30, Cols: 100}); err != nil {
		t.Fatal(err)
	}
	// Input typed while readline handles the SIGWINCH may be lost (bash's
	// own behaviour, on any terminal): ask again until the answer comes,
	// as TestSandboxInteractiveShell does.
	for i := 0; ; i++ {
		say(fmt.Sprintf("stty size; echo W%d-$((%d+1))", i, i))
		if out.waitFor(t, fmt.Sprintf("W%d-%d", i, i+1), 500*time.Millisecond) {
			break
		}
	}
	out.mu.Lock()
	text := out.text
	out.mu.Unlock()
	if !strings.Contains(text, "30 100") {
		t.Fatalf("the joined terminal never saw 30x100:\n%s", text)
	}
	say("sleep 1000 & jobs; echo $((2+2))Z")
	out.waitFor(t, "Running", 0)
	out.waitFor(t, "4Z", 0)
	// Job control is on only when bash got the terminal as its
	// controlling one (else: "no job control in this shell").
	say("[[ $- == *m* ]] && echo $((8+8))M; kill %1; wait; echo $((3+3))W")
	out.waitFor(t, "16M", 0)
	out.waitFor(t, "6W", 0)
	say("exit 7")
	if code, err := p.Wait(); code != 7 || err != nil {
		t.Fatalf("wait: %d %v, want 7", code, err)
	}
}

// TestExecUnderMemoryLimit: a sandbox with a memory limit (RLIMIT_DATA
// without a delegated cgroup, which refuses the init new mappings) starts
// and serves joins: the init maps its join buffers before the limit.
func TestExecUnderMemoryLimit(t *testing.T) {
	needKernel(t)
	pol := testPolicy()
	pol.Resources = &policy.Resources{Memory: "64Mi"}
	sb, err := Start(context.Background(), Config{Policy: pol, Home: t.TempDir(), Command: []string{"sleep", "1000"}})
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	defer sb.Close()
	big := strings.Repeat("x", 100<<10) // near maxJoinRequest: the child's copies fit its arena
	if code, out, _ := execRun(t, sb, ExecConfig{Command: []string{"sh", "-c", `echo ${#BIG}`}, Env: []string{"BIG=" + big}}); code != 0 || out != fmt.Sprintf("%d\n", len(big)) {
		t.Fatalf("exec: exit %d, output %q", code, out)
	}
}

// TestExecWhileStopping: once a SIGTERM has started the stop timeout, the
// init refuses new joins (the sandbox is going away).
func TestExecWhileStopping(t *testing.T) {
	needKernel(t)
	// Ready once the trap is set: a SIGTERM before it would end the agent,
	// and the exec would meet a sandbox whose agent has exited instead.
	sb := startReady(t, Config{StopTimeout: time.Hour}, "trap '' TERM") // outlives the SIGTERM
	if err := sb.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// The signal is queued for the init before the request is sent, and
	// the init takes signals first.
	_, err := sb.Exec(context.Background(), ExecConfig{Command: []string{"true"}})
	var se *StepError
	if !errors.As(err, &se) || errors.Is(err, ErrStopped) || !strings.Contains(err.Error(), "stopping (SIGTERM)") {
		t.Fatalf("exec while stopping: %v, want a refusal saying the sandbox is stopping", err)
	}
}
