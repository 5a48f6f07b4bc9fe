package e2e

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// runRec is the part of a `blueprint status -o json` run the tests read.
type runRec struct {
	ID           string `json:"id"`
	Sandbox      string `json:"sandbox"`
	Blueprint    string `json:"blueprint"`
	Version      string `json:"version"`
	Outcome      string `json:"outcome"`
	Status       string `json:"status"`
	Pid          int    `json:"pid"`
	UID          int    `json:"uid"`
	ExitCode     *int   `json:"exit_code"`
	SupersededBy string `json:"superseded_by"`
}

// runs is `blueprint status -o json`: the runs, newest first.
func (e *supEnv) runs(t *testing.T) []runRec {
	t.Helper()
	var rs []runRec
	if err := json.Unmarshal([]byte(e.must(t, "blueprint", "status", "-o", "json")), &rs); err != nil {
		t.Fatal(err)
	}
	return rs
}

// TestRunsApplyStatus: apply --detach writes a run record that status
// lists as running; a second apply of the same name is refused naming the
// running run; stop ends the run as exited 143 or 137,
// a later apply supersedes it, and destroy leaves nothing of the sandbox.
func TestRunsApplyStatus(t *testing.T) {
	requireSandboxKernel(t)
	asEachLauncher(t, runsApplyStatus)
}

func runsApplyStatus(t *testing.T, uid int) {
	e := newSupEnvAs(t, uid)
	e.must(t, "blueprint", "apply", "--detach", "--name", "bp", "--", "sleep", "1000")
	rs := e.runs(t)
	if len(rs) != 1 || rs[0].Sandbox != "bp" || rs[0].Outcome != "running" || rs[0].Status != "running" ||
		rs[0].Blueprint != "embedded:default" || rs[0].Version == "" || rs[0].UID != e.launcherUID() {
		t.Fatalf("status after apply --detach: %+v", rs)
	}
	first := rs[0]
	if out := e.must(t, "blueprint", "status"); !strings.Contains(out, first.ID) || !strings.Contains(out, "running") {
		t.Fatalf("status text:\n%s", out)
	}
	if out := e.must(t, "blueprint", "status", first.ID); !strings.Contains(out, "sandbox:") || !strings.Contains(out, "embedded:default") {
		t.Fatalf("status %s:\n%s", first.ID, out)
	}
	_, stderr, code := e.nc(t, "blueprint", "apply", "--detach", "--name", "bp", "--", "sleep", "1000")
	if code != 3 || !strings.Contains(stderr, "in use by run "+first.ID) {
		t.Fatalf("second apply of bp: exit %d, want 3 naming run %s\n%s", code, first.ID, stderr)
	}
	if rs := e.runs(t); len(rs) != 1 {
		t.Fatalf("the refused apply left a run: %+v", rs)
	}
	sup, initPid, cgroup := e.record(t, "bp")
	e.must(t, "sandbox", "stop", "--stop-timeout", "0s", "bp")
	// SIGTERM, then SIGKILL at once: sleep dies of either.
	if rs := e.runs(t); rs[0].Status != "exited 143" && rs[0].Status != "exited 137" {
		t.Fatalf("status after stop: %+v", rs)
	}
	e.must(t, "blueprint", "apply", "--no-tty", "--name", "bp", "--", "true")
	rs = e.runs(t)
	if len(rs) != 2 || rs[0].Status != "exited 0" || rs[1].SupersededBy != rs[0].ID {
		t.Fatalf("status after a second apply: %+v", rs)
	}
	e.must(t, "sandbox", "destroy", "bp")
	e.assertNothingLeft(t, "bp", []int{sup, initPid}, cgroup)
}

// launcherUID is the uid nemoclaw runs as.
func (e *supEnv) launcherUID() int {
	if e.uid >= 0 {
		return e.uid
	}
	return os.Getuid()
}

// holdInStart makes the next apply of sandbox name stop half-way, after
// it took the name and wrote its run record and before the agent runs:
// the sandbox's approvals.json is a FIFO, which the egress proxy's set-up
// opens and reads (egress.approvals.load) and which blocks it until the
// test writes. It returns the FIFO's path.
func (e *supEnv) holdInStart(t *testing.T, name string) string {
	t.Helper()
	dir := filepath.Join(e.home, "sandboxes", name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "approvals.json")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if e.uid >= 0 {
		for _, p := range []string{e.home, filepath.Dir(dir), dir, fifo} {
			if err := os.Chown(p, e.uid, e.uid); err != nil {
				t.Fatal(err)
			}
		}
	}
	return fifo
}

// awaitReader opens fifo for writing once a reader has it open: then the
// apply is blocked reading it, mid-way, until the writer is closed.
func awaitReader(t *testing.T, fifo string) *os.File {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		fd, err := unix.Open(fifo, unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err == nil {
			return os.NewFile(uintptr(fd), fifo)
		}
		if !errors.Is(err, unix.ENXIO) || time.Now().After(deadline) {
			t.Fatalf("no apply came to read %s: %v", fifo, err)
		}
	}
}

// TestRunsKilledMidApply: kill -9 of the detached supervisor of `blueprint
// apply --detach` before its agent runs leaves a run that status explains
// as died while starting, and a directory that destroy removes, with no
// process left (and an apply beside the held one is refused, naming it); kill -9 of the launcher instead leaves the supervisor to
// finish the start, and the run is running.
func TestRunsKilledMidApply(t *testing.T) {
	requireSandboxKernel(t)
	asEachLauncher(t, runsKilledMidApply)
}

func runsKilledMidApply(t *testing.T, uid int) {
	for _, victim := range []string{"supervisor", "launcher"} {
		t.Run(victim, func(t *testing.T) {
			e := newSupEnvAs(t, uid)
			fifo := e.holdInStart(t, "mid")
			launcher := e.cmd("blueprint", "apply", "--detach", "--name", "mid", "--", "sleep", "1000")
			if err := launcher.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = launcher.Process.Kill(); _, _ = launcher.Process.Wait() })
			w := awaitReader(t, fifo)
			defer w.Close()
			rs := e.runs(t)
			if len(rs) != 1 || rs[0].Status != "starting" || rs[0].Pid == launcher.Process.Pid {
				t.Fatalf("status while the apply is held: %+v", rs)
			}
			sup := rs[0].Pid
			// Two applies at once: the second is refused, naming the first.
			_, stderr, code := e.nc(t, "blueprint", "apply", "--no-tty", "--name", "mid", "--", "true")
			if code != 3 || !strings.Contains(stderr, "in use by run "+rs[0].ID) {
				t.Fatalf("apply beside a held one: exit %d, want 3 naming run %s\n%s", code, rs[0].ID, stderr)
			}
			if victim == "launcher" {
				if err := launcher.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				_, _ = launcher.Process.Wait()
				if _, err := w.WriteString("[]\n"); err != nil {
					t.Fatal(err)
				}
				w.Close()
				waitFor(t, "the orphaned supervisor to run the agent", func() bool { return e.runs(t)[0].Status == "running" })
				_, initPid, cgroup := e.record(t, "mid")
				e.must(t, "sandbox", "destroy", "--force", "mid")
				e.assertNothingLeft(t, "mid", []int{sup, initPid}, cgroup)
				return
			}
			if err := syscall.Kill(sup, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			err := launcher.Wait()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() == 0 {
				t.Fatalf("the launcher of a killed supervisor: %v, want a failure", err)
			}
			waitFor(t, "the killed supervisor to be gone", func() bool { return gone(sup) })
			rs = e.runs(t)
			if !strings.HasPrefix(rs[0].Status, "died (pid ") || !strings.Contains(rs[0].Status, "while starting") {
				t.Fatalf("status after kill -9 mid-apply: %+v", rs)
			}
			if out := e.must(t, "sandbox", "list"); !strings.Contains(out, "mid") {
				t.Fatalf("sandbox list does not show the half-made sandbox:\n%s", out)
			}
			e.must(t, "sandbox", "destroy", "mid")
			e.assertNothingLeft(t, "mid", []int{sup}, "")
		})
	}
}

// waitFor polls cond until it holds, failing the test after a minute.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestRunsRollback: rollback of the latest run stops its sandbox and
// starts it again as the run before launched it (its command), recorded
// as a run of its own; rolling back a run that is not the latest, or the
// first run, is refused; destroy leaves nothing of the sandbox.
func TestRunsRollback(t *testing.T) {
	e := newSupEnv(t)
	e.must(t, "blueprint", "apply", "-d", "--name", "rb", "--", "sh", "-c", "echo agent-$((1+0)); sleep 1000")
	e.must(t, "sandbox", "stop", "--stop-timeout", "0s", "rb")
	e.must(t, "blueprint", "apply", "-d", "--name", "rb", "--", "sh", "-c", "echo agent-$((1+1)); sleep 1000")
	rs := e.runs(t)
	first, second := rs[1], rs[0]
	_, stderr, code := e.nc(t, "blueprint", "rollback", first.ID)
	if code != 3 || !strings.Contains(stderr, "run "+second.ID+" of sandbox rb came after it") {
		t.Fatalf("rollback of an earlier run: exit %d\n%s", code, stderr)
	}
	out := e.must(t, "blueprint", "rollback", second.ID)
	rs = e.runs(t)
	if len(rs) != 3 || out != rs[0].ID+"\n" || rs[0].Status != "running" || rs[1].SupersededBy != rs[0].ID {
		t.Fatalf("after rollback (printed %q): %+v", out, rs)
	}
	if in := e.status(t, "rb"); in.State != "running" {
		t.Fatalf("sandbox after rollback: %+v", in)
	}
	waitFor(t, "the first run's agent to start again", func() bool {
		return strings.Count(e.must(t, "sandbox", "logs", "rb"), "agent-1") == 2
	})
	if full := e.must(t, "blueprint", "status", rs[0].ID); !strings.Contains(full, "rollback of:") || !strings.Contains(full, second.ID) {
		t.Fatalf("status of the rollback:\n%s", full)
	}
	sup, initPid, cgroup := e.record(t, "rb")
	e.must(t, "sandbox", "destroy", "--force", "rb")
	e.assertNothingLeft(t, "rb", []int{sup, initPid}, cgroup)
	e.must(t, "blueprint", "apply", "--no-tty", "--name", "solo", "--", "true")
	_, stderr, code = e.nc(t, "blueprint", "rollback", e.runs(t)[0].ID)
	if code != 3 || !strings.Contains(stderr, "first run of sandbox solo") {
		t.Fatalf("rollback of a first run: exit %d\n%s", code, stderr)
	}
}
