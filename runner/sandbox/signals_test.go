package sandbox

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestSignalForwarder sends real signals to this process: one arriving
// before the sandbox exists is held and reaches the agent once Forward
// names it, a later one reaches it at once, and Stop gives the signals
// back to the Go runtime.
func TestSignalForwarder(t *testing.T) {
	needKernel(t)
	for _, tc := range []struct {
		name string
		sig  syscall.Signal
		held bool // sent before the sandbox starts
		want int  // the agent's trap exits with it
	}{
		{name: "held SIGHUP", sig: syscall.SIGHUP, held: true, want: 7},
		{name: "held SIGINT", sig: syscall.SIGINT, held: true, want: 8},
		{name: "live SIGTERM", sig: syscall.SIGTERM, want: 9},
		{name: "live SIGQUIT", sig: syscall.SIGQUIT, want: 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fwd, err := CatchSignals()
			if err != nil {
				t.Fatal(err)
			}
			defer fwd.Stop()
			if _, err := CatchSignals(); err == nil {
				t.Fatal("a second CatchSignals succeeded while one is active")
			}
			if tc.held {
				if err := syscall.Kill(os.Getpid(), tc.sig); err != nil {
					t.Fatal(err)
				}
				waitFor(t, func() bool { return signalHeld(tc.sig) }, "the signal to be held")
			}
			sb := startReady(t, Config{}, "trap 'exit 7' HUP; trap 'exit 8' INT; trap 'exit 9' TERM; trap 'exit 10' QUIT")
			if err := fwd.Forward(sb, nil); err != nil {
				t.Fatal(err)
			}
			if !tc.held {
				if err := syscall.Kill(os.Getpid(), tc.sig); err != nil {
					t.Fatal(err)
				}
			}
			done := make(chan int, 1)
			go func() { code, _ := sb.Wait(); done <- code }()
			select {
			case code := <-done:
				if code != tc.want {
					t.Fatalf("agent exited %d, want %d (its %v trap)", code, tc.want, tc.sig)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("%v sent to the launcher never reached the agent", tc.sig)
			}
			if signalHeld(tc.sig) {
				t.Fatal("the signal is still held after Forward")
			}
		})
	}
	// After Stop the Go runtime handles the signals again.
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	defer signal.Stop(ch)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("after Stop, SIGHUP did not reach os/signal")
	}
}

// startReady starts a sandbox of cfg (with the test policy and a home of
// its own) whose agent, a shell, runs setup, says ready and loops until a
// signal ends it; it returns once the agent is ready. The test closes it.
func startReady(t *testing.T, cfg Config, setup string) *Sandbox {
	t.Helper()
	pr, pw := io.Pipe()
	cfg.Policy, cfg.Home, cfg.Stdout = testPolicy(), t.TempDir(), pw
	cfg.Command = []string{"/bin/sh", "-c", setup + "; echo ready; while :; do sleep 0.05; done"}
	sb, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	if line, err := bufio.NewReader(pr).ReadString('\n'); err != nil || strings.TrimRight(line, "\r\n") != "ready" { // \r\n from a terminal
		t.Fatalf("agent did not start: %q %v", line, err)
	}
	go io.Copy(io.Discard, pr)
	return sb
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// TestSignalForwarderAfterExit forwards to a sandbox whose agent has
// already exited and whose init is reaped (a quick agent beats the
// launcher to it): Forward still works, on the sandbox's own pidfd, and a
// held signal goes nowhere.
func TestSignalForwarderAfterExit(t *testing.T) {
	needKernel(t)
	fwd, err := CatchSignals()
	if err != nil {
		t.Fatal(err)
	}
	defer fwd.Stop()
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return signalHeld(syscall.SIGHUP) }, "SIGHUP to be held")
	sb, err := Start(context.Background(), Config{Policy: testPolicy(), Home: t.TempDir(), Command: []string{"true"}})
	if err != nil {
		t.Fatal(err)
	}
	if code, err := sb.Wait(); code != 0 || err != nil {
		t.Fatalf("exit %d %v", code, err)
	}
	if sb.reaped != nil {
		<-sb.reaped
	}
	if err := fwd.Forward(sb, nil); err != nil {
		t.Fatalf("Forward after the init was reaped: %v", err)
	}
	if signalHeld(syscall.SIGHUP) {
		t.Fatal("SIGHUP still held after Forward")
	}
	fwd.Stop()
	if err := sb.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := CatchSignals()
	if err != nil {
		t.Fatal(err)
	}
	defer again.Stop()
	if err := again.Forward(sb, nil); err == nil || !strings.Contains(err.Error(), "no pidfd") {
		t.Fatalf("Forward to a closed sandbox: %v; want the no-pidfd error", err)
	}
}

// hangupHelperEnv makes TestMain run hangupScenario instead of the tests:
// what a signal does to a process is only seen from outside it.
const hangupHelperEnv = "NEMOCLAW_TEST_HANGUP_SCENARIO"

// TestStopIgnoringHangup checks what SIGHUP does to a launcher after each
// way of stopping the forwarder: after Stop it is fatal again (the Go
// runtime's default), after StopIgnoringHangup it is ignored.
func TestStopIgnoringHangup(t *testing.T) {
	for _, tc := range []struct {
		mode   string
		killed bool
	}{
		{"stop", true},
		{"ignore", false},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), hangupHelperEnv+"="+tc.mode)
			out, err := cmd.CombinedOutput()
			var ws syscall.WaitStatus
			if ee, ok := err.(*exec.ExitError); ok {
				ws = ee.Sys().(syscall.WaitStatus)
			}
			switch {
			case tc.killed && !(ws.Signaled() && ws.Signal() == syscall.SIGHUP):
				t.Fatalf("want death by SIGHUP, got %v\n%s", err, out)
			case !tc.killed && (err != nil || string(out) != "survived\n"):
				t.Fatalf("want the SIGHUP ignored, got %v\n%s", err, out)
			}
		})
	}
}

// hangupScenario catches the signals, stops as mode says, and sends itself
// SIGHUP; it returns 0 if it is still alive after that.
func hangupScenario(mode string) int {
	f, err := CatchSignals()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if mode == "ignore" {
		f.StopIgnoringHangup()
	} else {
		f.Stop()
	}
	_ = syscall.Kill(os.Getpid(), syscall.SIGHUP)
	time.Sleep(200 * time.Millisecond) // delivery to whichever thread takes it
	fmt.Println("survived")
	return 0
}

// TestStopTimeout sends SIGTERM to agents that exit on it, ignore it, or
// ignore it with no stop timeout: only the one that ignores it within its
// timeout is killed by the init (137, with everything else in the
// sandbox), and only once the timeout has run out.
func TestStopTimeout(t *testing.T) {
	needKernel(t)
	for _, tc := range []struct {
		name    string
		trap    string
		timeout time.Duration
		want    int // -1: still running a second after SIGTERM
	}{
		// A long timeout: under load the shell may take more than a
		// short one to run its trap, and would be killed as if it ignored it.
		{"exits on SIGTERM", "trap 'exit 9' TERM", 10 * time.Second, 9},
		{"ignores SIGTERM", "trap '' TERM", 100 * time.Millisecond, 137},
		{"ignores SIGTERM, no limit", "trap '' TERM", -1, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sb := startReady(t, Config{StopTimeout: tc.timeout}, tc.trap)
			sent := time.Now()
			if err := sb.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			select {
			case <-sb.Done():
				code, _ := sb.Wait()
				if code != tc.want {
					t.Fatalf("exit %d, want %d", code, tc.want)
				}
				if tc.want == 137 && time.Since(sent) < tc.timeout {
					t.Fatalf("killed %v after SIGTERM, before its %v stop timeout", time.Since(sent), tc.timeout)
				}
			case <-time.After(time.Second + tc.timeout):
				if tc.want != -1 {
					t.Fatalf("still running %v after SIGTERM", time.Since(sent))
				}
			}
		})
	}
}

// TestStopTimeoutMs: Config.StopTimeout as the init reads it.
func TestStopTimeoutMs(t *testing.T) {
	for d, want := range map[time.Duration]int64{0: 10000, -1: -1, -time.Hour: -1, time.Nanosecond: 0, 1500 * time.Millisecond: 1500} {
		if got := stopTimeoutMs(d); got != want {
			t.Errorf("stopTimeoutMs(%v) = %d, want %d", d, got, want)
		}
	}
}

// TestForwardCopiesTerminalSize: Forward gives the sandbox's terminal the
// caller's size at once, with no SIGWINCH: a resize from before Forward
// must not depend on its signal having been held.
func TestForwardCopiesTerminalSize(t *testing.T) {
	needKernel(t)
	outer, outerSlave, err := openPTY(&WindowSize{Rows: 24, Cols: 80})
	if err != nil {
		t.Fatal(err)
	}
	defer outer.Close()
	defer outerSlave.Close()
	sb := startReady(t, Config{TTY: true, WindowSize: &WindowSize{Rows: 24, Cols: 80}}, "true")
	if err := unix.IoctlSetWinsize(rawFd(outer), unix.TIOCSWINSZ, &unix.Winsize{Row: 40, Col: 100}); err != nil {
		t.Fatal(err)
	}
	fwd, err := CatchSignals()
	if err != nil {
		t.Fatal(err)
	}
	defer fwd.Stop()
	if err := fwd.Forward(sb, outerSlave); err != nil {
		t.Fatal(err)
	}
	ws, err := unix.IoctlGetWinsize(rawFd(sb.ptm), unix.TIOCGWINSZ)
	if err != nil || ws.Row != 40 || ws.Col != 100 {
		t.Fatalf("the sandbox's terminal is %dx%d (%v), want the caller's 40x100", ws.Row, ws.Col, err)
	}
}
