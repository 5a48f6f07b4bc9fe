package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSupervisorKilledWhileStarting: kill -9 of a detached supervisor
// before its agent runs leaves a sandbox that list and status explain as
// "supervisor died at TIME while starting (pid N)", not as stopped; start
// recovers it (from the launch of its earlier run) and destroy removes
// everything: processes, namespaces, mounts and files.
func TestSupervisorKilledWhileStarting(t *testing.T) {
	e := newSupEnv(t)
	e.must(t, "sandbox", "run", "-d", "--name", "ks", "--", "sh", "-c", "echo agent-up; sleep 1000")
	e.must(t, "sandbox", "stop", "--stop-timeout", "0s", "ks")

	// The next start is held in the egress set-up, then its supervisor
	// is killed.
	fifo := e.holdInStart(t, "ks")
	launcher := e.cmd("sandbox", "start", "ks")
	if err := launcher.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = launcher.Process.Kill(); _, _ = launcher.Process.Wait() })
	w := awaitReader(t, fifo)
	defer w.Close()
	in := e.status(t, "ks")
	if in.State != "starting" || in.SupervisorPid == 0 || in.SupervisorPid == launcher.Process.Pid {
		t.Fatalf("status while the start is held: %+v", in)
	}
	sup := in.SupervisorPid
	if err := syscall.Kill(sup, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := launcher.Wait(); err == nil {
		t.Fatal("the launcher of a killed supervisor exited 0")
	}
	waitFor(t, "the killed supervisor to be gone", func() bool { return gone(sup) })
	want := "while starting (pid " + strconv.Itoa(sup) + ")"
	for _, args := range [][]string{{"sandbox", "list"}, {"sandbox", "status", "ks"}} {
		if out := e.must(t, args...); !strings.Contains(out, "supervisor died at ") || !strings.Contains(out, want) {
			t.Fatalf("%s after kill -9 while starting, want %q:\n%s", strings.Join(args, " "), want, out)
		}
	}
	if in := e.list(t)["ks"]; in.State != "dead" {
		t.Fatalf("list -o json after kill -9 while starting: %+v", in)
	}

	// start recovers it.
	if err := os.Remove(fifo); err != nil {
		t.Fatal(err)
	}
	e.must(t, "sandbox", "start", "ks")
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		logs := e.must(t, "sandbox", "logs", "ks")
		if strings.Count(logs, "agent-up") >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the recovered agent did not write its line; logs:\n%s\nstatus:\n%s", logs, e.must(t, "sandbox", "status", "ks"))
		}
	}
	sup2, initPid, cgroup := e.record(t, "ks")
	nsIDs := namespacesOf(t, initPid)
	dir := filepath.Join(e.home, "sandboxes", "ks")

	// Its supervisor killed while running: destroy cleans what is left.
	if err := syscall.Kill(sup2, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the second supervisor to be gone", func() bool { return gone(sup2) })
	e.must(t, "sandbox", "destroy", "ks")
	e.assertNothingLeft(t, "ks", []int{sup, sup2, initPid}, cgroup)
	assertNamespacesGone(t, nsIDs)
	assertNoMountUnder(t, dir)
}

// namespacesOf returns the net and mount namespace ids of process pid.
func namespacesOf(t *testing.T, pid int) []string {
	t.Helper()
	var ids []string
	for _, ns := range []string{"net", "mnt"} {
		id, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(pid), "ns", ns))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

// assertNamespacesGone fails if any process is still in one of ids
// (e.g. "net:[4026532..]").
func assertNamespacesGone(t *testing.T, ids []string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		left := ""
		procs, _ := filepath.Glob("/proc/[0-9]*/ns")
		for _, p := range procs {
			for _, ns := range []string{"net", "mnt"} {
				id, err := os.Readlink(filepath.Join(p, ns))
				for _, want := range ids {
					if err == nil && id == want {
						left = filepath.Dir(p) + " in " + id
					}
				}
			}
		}
		if left == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("a namespace of the destroyed sandbox remains: %s", left)
		}
	}
}

// assertNoMountUnder fails if the host's mount table has a mount at or
// under dir.
func assertNoMountUnder(t *testing.T, dir string) {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			t.Fatalf("a mount of the destroyed sandbox remains: %s", l)
		}
	}
}
