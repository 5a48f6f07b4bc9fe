package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nemoclaw/nemoclaw/runner/egress"
	"github.com/nemoclaw/nemoclaw/runner/sandbox"
)

// Info describes one sandbox as `sandbox list` and `sandbox status` show it.
type Info struct {
	Name  string `json:"name"`
	State string `json:"state"` // StateStarting, StateRunning, StateStopped or StateDead
	// Pid is the host pid of the sandbox's init; SupervisorPid its
	// supervisor's.
	Pid           int       `json:"pid,omitempty"`
	SupervisorPid int       `json:"supervisor_pid,omitempty"`
	Blueprint     string    `json:"blueprint,omitempty"`
	Version       string    `json:"version,omitempty"`
	Started       time.Time `json:"started,omitzero"`
	Ended         time.Time `json:"ended,omitzero"`
	ExitCode      *int      `json:"exit_code,omitempty"`
	// DiedAfter is, for a dead supervisor, its last sign of life: the
	// latest write to its record, log or audit log. Nothing records the
	// moment of a SIGKILL.
	DiedAfter time.Time `json:"died_after,omitzero"`
	// DiedWhile is, for a dead supervisor, what it was doing: "starting"
	// (the agent never ran) or "running".
	DiedWhile string `json:"died_while,omitempty"`
	// Generation and Pending come from a running supervisor: its policy
	// generation and how many requests wait for approval.
	Generation uint64   `json:"generation,omitempty"`
	Pending    int      `json:"pending"`
	Workspace  string   `json:"workspace,omitempty"`
	Detached   bool     `json:"detached,omitempty"`
	Command    []string `json:"command,omitempty"`
	Dir        string   `json:"dir"`
	// Problem explains a running supervisor that did not answer, or a
	// record that could not be read.
	Problem string `json:"problem,omitempty"`
}

func infoFromRecord(r *Record) Info {
	return Info{
		Name: r.Name, State: r.State, Pid: r.InitPid, SupervisorPid: r.SupervisorPid,
		Blueprint: r.Blueprint, Version: r.Version, Started: r.Started, Ended: r.Ended,
		ExitCode: r.ExitCode, Workspace: r.Workspace, Detached: r.Detached, Command: r.Command,
	}
}

// checkName refuses a name that is not a sandbox name (and so could name
// a path outside $NEMOCLAW_HOME/sandboxes).
func checkName(name string) error {
	if !sandbox.ValidName(name) || strings.Contains(name, "..") {
		return fmt.Errorf("sandbox name %q: want lowercase letters, digits, '.', '_' or '-'", name)
	}
	return nil
}

// Inspect returns what the record of sandbox name says, checked against
// the living: a record that says running whose supervisor is gone is
// StateDead. A running supervisor is asked for its policy generation and
// pending approvals (within timeout).
func Inspect(ctx context.Context, home, name string, timeout time.Duration) (Info, error) {
	if err := checkName(name); err != nil {
		return Info{}, err
	}
	dir := Dir(home, name)
	st, err := os.Stat(dir)
	if err != nil || !st.IsDir() {
		return Info{}, fmt.Errorf("sandbox %s: %w: nothing at %s (see nemoclaw sandbox list)", name, ErrNoSandbox, dir)
	}
	in := inspectDir(dir, name)
	if in.State == StateRunning {
		askLive(ctx, home, &in, timeout)
	}
	return in, nil
}

// inspectDir reads a sandbox directory's record and checks its supervisor.
func inspectDir(dir, name string) Info {
	rec, err := readRecord(dir)
	if err != nil {
		in := Info{Name: name, State: StateStopped, Dir: dir}
		if !errors.Is(err, fs.ErrNotExist) {
			in.Problem = err.Error()
		}
		return in
	}
	in := infoFromRecord(rec)
	in.Name, in.Dir = name, dir
	if (rec.State == StateRunning || rec.State == StateStarting) && !alive(rec.SupervisorPid, rec.SupervisorStart) {
		in.State, in.DiedAfter, in.DiedWhile = StateDead, lastSign(dir), rec.State
	}
	return in
}

// askLive asks a running supervisor for its policy generation and pending
// approvals: the pending operation, which, unlike status, makes the proxy
// flush nothing to disk.
func askLive(ctx context.Context, home string, in *Info, timeout time.Duration) {
	c := NewClient(home, in.Name)
	c.Timeout = timeout
	r, err := c.Call(ctx, Request{ControlRequest: egress.ControlRequest{Op: egress.OpPending}})
	if err != nil {
		in.Problem = err.Error()
		return
	}
	in.Generation, in.Pending = r.Generation, len(r.Pending)
}

// lastSign is the latest modification time among a dead supervisor's files.
func lastSign(dir string) time.Time {
	var t time.Time
	for _, f := range []string{StateFile, LogFile, AuditFile, AgentLogFile} {
		if st, err := os.Stat(filepath.Join(dir, f)); err == nil && st.ModTime().After(t) {
			t = st.ModTime()
		}
	}
	return t
}

// List returns every sandbox under home, sorted by name; running ones are
// asked for their live numbers in parallel.
func List(ctx context.Context, home string, timeout time.Duration) ([]Info, error) {
	ents, err := os.ReadDir(filepath.Join(home, "sandboxes"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list sandboxes: %w", err)
	}
	out := make([]Info, 0, len(ents))
	for _, e := range ents {
		if e.IsDir() && checkName(e.Name()) == nil {
			out = append(out, inspectDir(filepath.Join(home, "sandboxes", e.Name()), e.Name()))
		}
	}
	var wg sync.WaitGroup
	for i := range out {
		if out[i].State != StateRunning {
			continue
		}
		wg.Add(1)
		go func(in *Info) {
			defer wg.Done()
			askLive(ctx, home, in, timeout)
		}(&out[i])
	}
	wg.Wait()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Running reports whether sandbox name's supervisor is alive, from its
// record alone (no question to the supervisor): what a follower polls.
func Running(home, name string) bool {
	return checkName(name) == nil && inspectDir(Dir(home, name), name).State == StateRunning
}

// Detached reports whether sandbox name's last (or current) run was
// detached, from its record: whether the agent's output is in AgentLogFile.
func Detached(home, name string) bool {
	return checkName(name) == nil && inspectDir(Dir(home, name), name).Detached
}

// Names returns the names of the sandboxes under home (for completion).
func Names(home string) []string {
	ents, _ := os.ReadDir(filepath.Join(home, "sandboxes"))
	var names []string
	for _, e := range ents {
		if e.IsDir() && checkName(e.Name()) == nil {
			names = append(names, e.Name())
		}
	}
	return names
}

// StopSandbox stops running sandbox name and waits until its supervisor
// has exited: SIGTERM to the agent, then a kill after timeout. A sandbox
// that is not running is not an error; ctx bounds the wait.
func StopSandbox(ctx context.Context, home, name string, timeout time.Duration) (Info, error) {
	in, err := Inspect(ctx, home, name, 5*time.Second)
	if err != nil || in.State != StateRunning {
		return in, err
	}
	c := NewClient(home, name)
	c.Timeout = 10 * time.Second
	if err := c.Stop(ctx, timeout); err != nil {
		return in, fmt.Errorf("stop %s: %w", name, err)
	}
	rec, err := readRecord(in.Dir)
	if err != nil {
		return in, fmt.Errorf("stop %s: %w", name, err)
	}
	for alive(rec.SupervisorPid, rec.SupervisorStart) {
		select {
		case <-ctx.Done():
			return in, fmt.Errorf("stop %s: supervisor pid %d still runs: %w", name, rec.SupervisorPid, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return inspectDir(in.Dir, name), nil
}

// DestroyConfig says what Destroy may do.
type DestroyConfig struct {
	Home, Name string
	// Force stops a running sandbox first (at once: no grace period);
	// without it a running sandbox is refused.
	Force bool
}

// Destroy removes everything of sandbox name: its supervisor and processes
// (Force), a dead supervisor's leftovers (its init, should it outlive it,
// and its cgroup) and its directory, with the kept workspace, logs, audit
// log and saved approvals. A --workdir outside the directory is the
// user's and stays.
func Destroy(ctx context.Context, cfg DestroyConfig) error {
	in, err := Inspect(ctx, cfg.Home, cfg.Name, 5*time.Second)
	if err != nil {
		return err
	}
	if in.State == StateStarting {
		if !cfg.Force {
			return fmt.Errorf("destroy %s: the sandbox is starting (supervisor pid %d)\n  what to do: wait for it and stop it (nemoclaw sandbox stop %s), or pass --force", cfg.Name, in.SupervisorPid, cfg.Name)
		}
		// No control socket yet: the supervisor is killed, and what it
		// started with it (PR_SET_PDEATHSIG).
		if rec, rerr := readRecord(in.Dir); rerr == nil {
			killVerified(rec.SupervisorPid, rec.SupervisorStart)
		}
	}
	if in.State == StateRunning {
		if !cfg.Force {
			return fmt.Errorf("destroy %s: the sandbox is running (supervisor pid %d)\n  what to do: stop it first (nemoclaw sandbox stop %s), or pass --force", cfg.Name, in.SupervisorPid, cfg.Name)
		}
		sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		_, err := StopSandbox(sctx, cfg.Home, cfg.Name, 0)
		cancel()
		if err != nil {
			// A supervisor that does not answer is killed: its init
			// dies with it (PR_SET_PDEATHSIG).
			if rec, rerr := readRecord(in.Dir); rerr == nil {
				killVerified(rec.SupervisorPid, rec.SupervisorStart)
			}
		}
	}
	rec, err := readRecord(in.Dir)
	if err == nil {
		if alive(rec.SupervisorPid, rec.SupervisorStart) && (rec.State == StateRunning || rec.State == StateStarting) {
			return fmt.Errorf("destroy %s: supervisor pid %d still runs", cfg.Name, rec.SupervisorPid)
		}
		killVerified(rec.InitPid, rec.InitStart)
		if rec.Cgroup != "" {
			if err := removeCgroup(ctx, rec.Cgroup); err != nil {
				return fmt.Errorf("destroy %s: %w", cfg.Name, err)
			}
		}
	}
	lock, err := lockDir(in.Dir, cfg.Name)
	if err != nil {
		return fmt.Errorf("destroy %s: %w", cfg.Name, err)
	}
	defer lock.Close()
	if err := removeTree(in.Dir); err != nil {
		return fmt.Errorf("destroy %s: %w", cfg.Name, err)
	}
	return nil
}

// removeTree removes dir and everything in it. The agent may have left
// directories without write permission in a kept workspace (chmod 0500),
// which stop a launcher that is not root: those get u+rwx first. Each is
// opened O_NOFOLLOW and changed through its descriptor, so that a symlink
// is never followed out of the tree.
func removeTree(dir string) error {
	if err := os.RemoveAll(dir); err == nil {
		return nil
	}
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil && d == nil {
			return nil
		}
		if !d.IsDir() {
			return nil
		}
		fd, oerr := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if oerr != nil {
			return nil
		}
		var st unix.Stat_t
		if unix.Fstat(fd, &st) == nil && st.Mode&0o700 != 0o700 {
			_ = unix.Fchmod(fd, st.Mode&0o7777|0o700)
		}
		unix.Close(fd)
		return nil
	})
	return os.RemoveAll(dir)
}

// killVerified SIGKILLs pid if it still is the process that started at
// start, through a pidfd, so that a reused pid is never hit.
func killVerified(pid int, start uint64) {
	if pid <= 0 || start == 0 {
		return
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	if alive(pid, start) { // checked while the pidfd pins pid
		_ = unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
		for i := 0; i < 250 && alive(pid, start); i++ {
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// removeCgroup kills whatever is left in a sandbox's cgroup and removes it.
func removeCgroup(ctx context.Context, dir string) error {
	if !strings.HasPrefix(dir, "/sys/fs/cgroup/") || strings.Contains(dir, "..") {
		return fmt.Errorf("cgroup %q is not under /sys/fs/cgroup", dir)
	}
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	_ = os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0)
	for {
		err := os.Remove(dir)
		if err == nil || errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if !errors.Is(err, syscall.EBUSY) {
			return fmt.Errorf("remove cgroup %s: %w", dir, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("remove cgroup %s: %w", dir, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Uptime formats how long a running sandbox has run.
func (in Info) Uptime(now time.Time) string {
	if in.State != StateRunning || in.Started.IsZero() {
		return ""
	}
	return now.Sub(in.Started).Truncate(time.Second).String()
}

// Summary is the one-line state for a human: "running", "stopped (exit 0)",
// "supervisor died after TIME", "supervisor died at TIME while starting
// (pid N)" (TIME: its last sign of life).
func (in Info) Summary() string {
	switch in.State {
	case StateDead:
		if in.DiedWhile == StateStarting {
			return fmt.Sprintf("supervisor died at %s while starting (pid %d)", in.DiedAfter.Format(time.DateTime), in.SupervisorPid)
		}
		return "supervisor died after " + in.DiedAfter.Format(time.DateTime)
	case StateStarting:
		return fmt.Sprintf("starting (supervisor pid %d)", in.SupervisorPid)
	case StateStopped:
		if in.ExitCode != nil {
			return "stopped (exit " + strconv.Itoa(*in.ExitCode) + ")"
		}
	}
	return in.State
}

// EnsureStopped stops sandbox name if it runs (StopSandbox) and makes
// sure its supervisor is gone; a sandbox that does not run, or does not
// exist, is not an error.
func EnsureStopped(ctx context.Context, home, name string, timeout time.Duration) error {
	in, err := StopSandbox(ctx, home, name, timeout)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrNoSandbox) {
		return nil
	}
	if err == nil && in.State == StateRunning {
		err = fmt.Errorf("stop %s: the sandbox still runs (supervisor pid %d)", name, in.SupervisorPid)
	}
	return err
}
