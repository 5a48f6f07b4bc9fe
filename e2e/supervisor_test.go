package e2e

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// supEnv is a $NEMOCLAW_HOME for the supervisor tests.
type supEnv struct {
	home string
	uid  int // the launcher's uid; -1: the caller
}

func newSupEnv(t *testing.T) *supEnv { return newSupEnvAs(t, -1) }

// newSupEnvAs is newSupEnv for a launcher running as uid (-1: the caller).
func newSupEnvAs(t *testing.T, uid int) *supEnv {
	t.Helper()
	requireSandboxKernel(t)
	base, err := os.MkdirTemp("", "nemoclaw-e2e-sup-")
	if err != nil {
		t.Fatal(err)
	}
	if uid >= 0 {
		if err := os.Chown(base, uid, uid); err != nil {
			t.Fatal(err)
		}
	}
	e := &supEnv{home: filepath.Join(base, "home"), uid: uid}
	t.Cleanup(func() {
		// Whatever a failed test left running goes, then the files.
		for _, n := range e.names() {
			_, _, _ = e.nc(t, "sandbox", "destroy", "--force", n)
		}
		os.RemoveAll(base)
	})
	return e
}

func (e *supEnv) cmd(args ...string) *exec.Cmd {
	cmd := exec.Command(Bin("nemoclaw"), args...)
	cmd.Env = []string{"NEMOCLAW_HOME=" + e.home, "PATH=" + os.Getenv("PATH")}
	if e.uid >= 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(e.uid), Gid: uint32(e.uid)}}
	}
	return cmd
}

// nc runs nemoclaw and returns stdout, stderr and the exit code; a run
// that does not return in a minute (a detached supervisor holding the
// caller's pipes, say) fails the test.
func (e *supEnv) nc(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	cmd := e.cmd(args...)
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-done:
		case <-time.After(time.Minute):
			if cmd.Process != nil {
				_ = cmd.Process.Kill()
			}
		}
	}()
	return runCmd(t, cmd)
}

// must runs nemoclaw and fails the test unless it exits 0.
func (e *supEnv) must(t *testing.T, args ...string) string {
	t.Helper()
	out, errs, code := e.nc(t, args...)
	if code != 0 {
		t.Fatalf("nemoclaw %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

func (e *supEnv) names() []string {
	ents, _ := os.ReadDir(filepath.Join(e.home, "sandboxes"))
	var n []string
	for _, d := range ents {
		n = append(n, d.Name())
	}
	return n
}

// sbInfo is the part of `sandbox list/status -o json` the tests read.
type sbInfo struct {
	Name          string    `json:"name"`
	State         string    `json:"state"`
	Pid           int       `json:"pid"`
	SupervisorPid int       `json:"supervisor_pid"`
	Blueprint     string    `json:"blueprint"`
	Version       string    `json:"version"`
	Started       time.Time `json:"started"`
	DiedAfter     time.Time `json:"died_after"`
	Generation    uint64    `json:"generation"`
	Pending       int       `json:"pending"`
	ExitCode      *int      `json:"exit_code"`
	Problem       string    `json:"problem"`
}

func (e *supEnv) status(t *testing.T, name string) sbInfo {
	t.Helper()
	var in sbInfo
	if err := json.Unmarshal([]byte(e.must(t, "sandbox", "status", name, "-o", "json")), &in); err != nil {
		t.Fatal(err)
	}
	return in
}

func (e *supEnv) list(t *testing.T) map[string]sbInfo {
	t.Helper()
	var all []sbInfo
	if err := json.Unmarshal([]byte(e.must(t, "sandbox", "list", "-o", "json")), &all); err != nil {
		t.Fatal(err)
	}
	m := map[string]sbInfo{}
	for _, in := range all {
		m[in.Name] = in
	}
	return m
}

// record reads a sandbox's supervisor.json.
func (e *supEnv) record(t *testing.T, name string) (sup, init int, cgroup string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(e.home, "sandboxes", name, "supervisor.json"))
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		SupervisorPid int    `json:"supervisor_pid"`
		InitPid       int    `json:"init_pid"`
		Cgroup        string `json:"cgroup"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return r.SupervisorPid, r.InitPid, r.Cgroup
}

// gone reports whether pid has exited (a zombie counts: only its reaping
// by whoever adopted it is missing).
func gone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	return len(f) > 0 && (f[0] == "Z" || f[0] == "X")
}

// assertNothingLeft checks that no process, cgroup or file of a destroyed
// sandbox remains.
func (e *supEnv) assertNothingLeft(t *testing.T, name string, pids []int, cgroup string) {
	t.Helper()
	for _, p := range pids {
		for deadline := time.Now().Add(10 * time.Second); !gone(p); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("process %d of sandbox %s still runs", p, name)
			}
		}
	}
	if cgroup != "" {
		if _, err := os.Stat(cgroup); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("cgroup %s of sandbox %s remains: %v", cgroup, name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(e.home, "sandboxes", name)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("directory of sandbox %s remains: %v", name, err)
	}
	if out := e.must(t, "sandbox", "list"); strings.Contains(out, name) {
		t.Fatalf("sandbox list still shows %s:\n%s", name, out)
	}
}

// TestSupervisorDetachLifecycle: run --detach returns once the agent runs,
// printing the name, with a supervisor in a session of its own; list,
// status and logs --follow see it; stop ends it and logs --follow with it;
// destroy leaves nothing.
func TestSupervisorDetachLifecycle(t *testing.T) {
	requireSandboxKernel(t)
	asEachLauncher(t, detachLifecycle)
}

func detachLifecycle(t *testing.T, uid int) {
	e := newSupEnvAs(t, uid)
	out := e.must(t, "sandbox", "run", "--detach", "--name", "life", "--keep", "--",
		// A directory the agent made read-only must not stop destroy.
		"sh", "-c", "mkdir /sandbox/ro && touch /sandbox/ro/f && chmod 0500 /sandbox/ro; echo hello-out; echo hello-err >&2; i=0; while :; do echo tick $i; i=$((i+1)); sleep 0.1; done")
	if out != "life\n" {
		t.Fatalf("--detach printed %q, want the name alone", out)
	}
	in := e.list(t)["life"]
	if in.State != "running" || in.Pid <= 0 || in.Generation != 1 || in.Pending != 0 || in.Problem != "" {
		t.Fatalf("list: %+v", in)
	}
	st := e.status(t, "life")
	if st.SupervisorPid != in.SupervisorPid || st.Started.IsZero() {
		t.Fatalf("status: %+v", st)
	}
	// Detached: a session of its own, so no terminal's hangup reaches it.
	if sid, err := unix.Getsid(st.SupervisorPid); err != nil || sid != st.SupervisorPid {
		t.Fatalf("supervisor %d: session %d (%v), want its own", st.SupervisorPid, sid, err)
	}
	sup, initPid, cgroup := e.record(t, "life")
	if text := e.must(t, "sandbox", "list"); !strings.Contains(text, "life") || !strings.Contains(text, "running") {
		t.Fatalf("list text:\n%s", text)
	}
	// logs --follow shows what is there and what comes, and ends with the
	// sandbox.
	follow := e.cmd("sandbox", "logs", "--follow", "life")
	pipe, err := follow.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = follow.Process.Kill() })
	seen := map[string]bool{}
	sc := bufio.NewScanner(pipe)
	for sc.Scan() && !seen["tick 15"] {
		seen[sc.Text()] = true
	}
	for _, want := range []string{"hello-out", "hello-err", "tick 0", "tick 15"} {
		if !seen[want] {
			t.Fatalf("logs --follow: no %q in %v", want, seen)
		}
	}
	if out := e.must(t, "sandbox", "stop", "--stop-timeout", "5s", "life"); !strings.Contains(out, "stopped (exit 143)") {
		t.Fatalf("stop: %q", out)
	}
	for sc.Scan() {
	}
	waited := make(chan error, 1)
	go func() { waited <- follow.Wait() }()
	select {
	case err := <-waited:
		if err != nil {
			t.Fatalf("logs --follow: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("logs --follow still runs after the sandbox stopped")
	}
	if in := e.list(t)["life"]; in.State != "stopped" || in.ExitCode == nil || *in.ExitCode != 143 {
		t.Fatalf("after stop: %+v", in)
	}
	if !gone(sup) || !gone(initPid) {
		t.Fatalf("after stop: supervisor %d gone %v, init %d gone %v", sup, gone(sup), initPid, gone(initPid))
	}
	// The stopped sandbox keeps its workspace and logs until destroyed.
	if out := e.must(t, "sandbox", "logs", "life"); !strings.Contains(out, "tick 3") {
		t.Fatalf("logs after stop: %q", out)
	}
	e.must(t, "sandbox", "destroy", "life")
	e.assertNothingLeft(t, "life", []int{sup, initPid}, cgroup)
}

// TestSupervisorKilled: kill -9 of a detached supervisor takes its agent
// with it; list explains it; destroy, with no --force needed, leaves
// nothing.
func TestSupervisorKilled(t *testing.T) {
	requireSandboxKernel(t)
	asEachLauncher(t, supervisorKilled)
}

func supervisorKilled(t *testing.T, uid int) {
	e := newSupEnvAs(t, uid)
	e.must(t, "sandbox", "run", "-d", "--name", "victim", "--", "sleep", "1000")
	sup, initPid, cgroup := e.record(t, "victim")
	if err := syscall.Kill(sup, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); !gone(sup) || !gone(initPid); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after kill -9 of supervisor %d: init %d gone %v", sup, initPid, gone(initPid))
		}
	}
	in := e.list(t)["victim"]
	if in.State != "dead" || in.DiedAfter.IsZero() {
		t.Fatalf("list after kill -9: %+v", in)
	}
	if text := e.must(t, "sandbox", "list"); !strings.Contains(text, "supervisor died after") {
		t.Fatalf("list text after kill -9:\n%s", text)
	}
	// The name is free: the lock died with the supervisor.
	e.must(t, "sandbox", "destroy", "victim")
	e.assertNothingLeft(t, "victim", []int{sup, initPid}, cgroup)
}

// TestSupervisorDestroyRunning: destroy refuses a running sandbox without
// --force, naming what to do, and with it kills and removes everything.
func TestSupervisorDestroyRunning(t *testing.T) {
	e := newSupEnv(t)
	e.must(t, "sandbox", "run", "-d", "--name", "busy", "--keep", "--", "sh", "-c", "trap '' TERM; echo x > /sandbox/file; sleep 1000 & wait; sleep 1000")
	sup, initPid, cgroup := e.record(t, "busy")
	_, stderr, code := e.nc(t, "sandbox", "destroy", "busy")
	if code != 1 || !strings.Contains(stderr, "is running") || !strings.Contains(stderr, "--force") {
		t.Fatalf("destroy without --force: exit %d\n%s", code, stderr)
	}
	if in := e.status(t, "busy"); in.State != "running" {
		t.Fatalf("a refused destroy touched the sandbox: %+v", in)
	}
	e.must(t, "sandbox", "destroy", "--force", "busy")
	e.assertNothingLeft(t, "busy", []int{sup, initPid}, cgroup)
}

// TestSupervisorApplyDetach: blueprint apply --detach records the
// blueprint and version the sandbox runs.
func TestSupervisorApplyDetach(t *testing.T) {
	e := newSupEnv(t)
	if out := e.must(t, "blueprint", "apply", "--detach", "--name", "bp", "--", "sleep", "1000"); out != "bp\n" {
		t.Fatalf("apply --detach printed %q", out)
	}
	in := e.status(t, "bp")
	if in.State != "running" || in.Blueprint != "embedded:default" || in.Version == "" {
		t.Fatalf("status: %+v", in)
	}
	sup, initPid, cgroup := e.record(t, "bp")
	e.must(t, "sandbox", "stop", "--stop-timeout", "0s", "bp")
	e.must(t, "sandbox", "destroy", "bp")
	e.assertNothingLeft(t, "bp", []int{sup, initPid}, cgroup)
}

// TestSupervisorLogsStayOffTheTerminal: an interactive run prints the
// banner, and the proxy's WARN about a denied destination goes to the
// sandbox's supervisor.log, not into the agent's terminal.
func TestSupervisorLogsStayOffTheTerminal(t *testing.T) {
	e := newSupEnv(t)
	ptm, pts := openTestPTY(t, 24, 80)
	cmd := e.cmd("sandbox", "run", "--name", "tty", "--", "sh", "-c", "curl -s -o /dev/null https://denied.invalid/; echo DONE-$((40+2))")
	cmd.Env = append(cmd.Env, "TERM=xterm")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = pts, pts, pts
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	pts.Close()
	out := newPTYReader(ptm)
	out.expect(t, "nemoclaw: sandbox tty")
	out.expect(t, "inference: none: inference.local answers 503")
	out.expect(t, "DONE-42")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("run: %v\n%s", err, out.text())
	}
	if strings.Contains(out.text(), "level=") || strings.Contains(out.text(), "denied.invalid") {
		t.Fatalf("supervisor log lines reached the agent's terminal:\n%s", out.text())
	}
	log, err := os.ReadFile(filepath.Join(e.home, "sandboxes", "tty", "supervisor.log"))
	if err != nil || !strings.Contains(string(log), "denied.invalid") {
		t.Fatalf("supervisor.log (%v):\n%s", err, log)
	}
}

// TestSupervisorStartAfterKill: a sandbox whose supervisor was killed
// comes back with `sandbox start`: the same command and workspace, and the
// network policy with the preset added live before the kill.
func TestSupervisorStartAfterKill(t *testing.T) {
	e := newSupEnv(t)
	agent := []string{"sh", "-c", "echo run >> /sandbox/runs; echo runs=$(wc -l < /sandbox/runs); sleep 1000"}
	e.must(t, append([]string{"sandbox", "run", "-d", "--name", "back", "--keep", "--"}, agent...)...)
	if out := e.must(t, "policy", "add", "back", "pypi"); !strings.Contains(out, "generation 2") {
		t.Fatalf("policy add: %q", out)
	}
	sup, initPid, _ := e.record(t, "back")
	if err := syscall.Kill(sup, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); !gone(sup) || !gone(initPid); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("supervisor or init outlived kill -9")
		}
	}
	if in := e.status(t, "back"); in.State != "dead" {
		t.Fatalf("after kill -9: %+v", in)
	}
	if out := e.must(t, "sandbox", "start", "back"); out != "back\n" {
		t.Fatalf("start printed %q", out)
	}
	if in := e.status(t, "back"); in.State != "running" || in.SupervisorPid == sup {
		t.Fatalf("after start: %+v", in)
	}
	_, stderr, code := e.nc(t, "sandbox", "start", "back")
	if code != 1 || !strings.Contains(stderr, "running already") {
		t.Fatalf("second start: exit %d\n%s", code, stderr)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if strings.Contains(e.must(t, "sandbox", "logs", "back"), "runs=2") {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("the started agent did not see the first run's workspace:\n%s", e.must(t, "sandbox", "logs", "back"))
		}
	}
	launch, err := os.ReadFile(filepath.Join(e.home, "sandboxes", "back", "launch.json"))
	if err != nil || !strings.Contains(string(launch), "pypi.org") {
		t.Fatalf("launch.json lost the live preset (%v):\n%s", err, launch)
	}
	sup2, init2, cgroup := e.record(t, "back")
	e.must(t, "sandbox", "destroy", "--force", "back")
	e.assertNothingLeft(t, "back", []int{sup, initPid, sup2, init2}, cgroup)
}

// TestSupervisorStopForeground: `sandbox stop` from another terminal ends
// a foreground run, which exits with its agent's status (143: SIGTERM),
// and list then shows it stopped, not dead.
func TestSupervisorStopForeground(t *testing.T) {
	e := newSupEnv(t)
	fg := e.cmd("sandbox", "run", "--no-tty", "--name", "fg", "--keep", "--", "sleep", "1000")
	if err := fg.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fg.Process.Kill() })
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		out, _, _ := e.nc(t, "sandbox", "status", "fg", "-o", "json")
		if strings.Contains(out, `"state": "running"`) {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("the foreground run never showed as running:\n%s", out)
		}
	}
	e.must(t, "sandbox", "stop", "fg")
	err := fg.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 143 {
		t.Fatalf("foreground run after stop: %v, want exit 143", err)
	}
	if in := e.status(t, "fg"); in.State != "stopped" || in.ExitCode == nil || *in.ExitCode != 143 {
		t.Fatalf("after stop: %+v", in)
	}
}
