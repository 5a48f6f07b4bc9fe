package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Joining a running sandbox: Exec asks the sandbox's init (its pid 1, which
// the launcher keeps a socket to) to start a process. The init starts it as
// it started the agent, running the agent's section of the program again
// (no_new_privs, bounding set, securebits, ids, capabilities, the agent's
// Landlock ruleset, the seccomp filter) with the request's command in place
// of the agent's: the request carries nothing those steps read, so a joined
// process can never hold more than the agent. See nsinit.c ("joining the
// running sandbox") and docs/sandbox.md.

// ErrStopped is the cause of an Exec refused because the sandbox's agent
// has exited: a sandbox lives as long as its agent.
var ErrStopped = errors.New("the sandbox's agent has exited and the sandbox is stopping")

// Limits of a join request; nsinit.c's JOIN_MAX and MAX_ARGS are larger.
const (
	maxJoinRequest = 128 << 10
	maxJoinArgs    = 4000
)

// ExecConfig describes a process to start in a running sandbox.
type ExecConfig struct {
	// Command is the argv; a bare name is looked up in the PATH of the
	// process's environment, as the agent's is.
	Command []string
	// Env is added to the agent's environment (the environment Start
	// built; the caller's own never enters), NAME=VALUE each. TERM is
	// "dumb" without a TTY, and the agent's (or xterm-256color) with one,
	// unless Env sets it.
	Env []string
	// Dir is the working directory inside the sandbox (default Workdir).
	Dir string
	// Stdin, Stdout and Stderr are the process's streams (nil: /dev/null).
	// Only pipes and character devices that are not terminals are handed
	// to the process as they are; anything else (a terminal, a regular
	// file, a socket, a Go reader or writer) reaches it as a pipe that
	// this process copies, as for the agent.
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// TTY runs the process on a new pseudo-terminal (its controlling
	// terminal: job control works) copied to and from Stdin and Stdout;
	// the caller puts its own terminal in raw mode. A Stdin that is not a
	// terminal ends as a typed ^D.
	TTY bool
	// WindowSize is the pseudo-terminal's initial size.
	WindowSize *WindowSize
}

// Process is a process started in a running sandbox by Exec.
type Process struct {
	sb  *Sandbox
	id  uint64
	pid int
	io  *execIO

	started  chan struct{} // the init has answered
	startErr error
	exited   chan struct{} // its exit is known
	code     int
	err      error
	finished sync.Once
}

// joinReply is the init's answer to a join request.
type joinReply struct {
	ID    uint64     `json:"id"`
	Pid   int        `json:"pid,omitempty"`
	Error *stepError `json:"error,omitempty"`
}

// joinedExit is the exit of a joined process, as the init reaped it.
type joinedExit struct {
	ID     uint64 `json:"id"`
	Code   int    `json:"code"`
	Signal int    `json:"signal,omitempty"`
}

// joinTable tracks a sandbox's joined processes, by request id.
type joinTable struct {
	mu    sync.Mutex
	next  uint64
	procs map[uint64]*Process
	ended bool
	// sendMu orders requests on the status socket; apart from mu, which
	// the status reader takes, so a blocked send never stops the reader.
	sendMu sync.Mutex
}

// Exec starts cfg.Command in the running sandbox, in all its namespaces,
// with exactly the agent's restrictions (user, capabilities, Landlock,
// seccomp, limits, cgroup). It returns once the process runs. A command
// that cannot be executed returns a *StepError whose ExecStatus is 127
// (not found) or 126 (not executable), as for the agent; a sandbox whose
// agent has exited refuses with ErrStopped. Processes started here are
// killed when the agent exits, with everything else in the sandbox.
// Cancelling ctx before Exec returns kills the process.
func (sb *Sandbox) Exec(ctx context.Context, cfg ExecConfig) (*Process, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	req, err := sb.joinRequest(&cfg)
	if err != nil {
		return nil, err
	}
	x, err := newExecIO(&cfg)
	if err != nil {
		return nil, stepErr("exec: streams", err)
	}
	p := &Process{sb: sb, io: x, started: make(chan struct{}), exited: make(chan struct{})}
	t := &sb.joins
	t.mu.Lock()
	if t.ended {
		t.mu.Unlock()
		x.abort()
		return nil, sb.stoppedErr()
	}
	if t.procs == nil {
		t.procs = map[uint64]*Process{}
	}
	t.next++
	p.id = t.next
	t.procs[p.id] = p
	t.mu.Unlock()

	var prog program
	prog.op(opJoin, "join", p.id)
	prog.b = append(prog.b, req...)
	err = sb.sendJoin(prog.b, x.child[:])
	x.childSent()
	if err != nil {
		t.forget(p.id)
		x.abort()
		return nil, stepErr("exec: request", err)
	}
	// The init answers at once: it is suspended only until the process
	// has exec'd (or failed to).
	<-p.started
	if p.startErr != nil {
		x.abort()
		return nil, p.startErr
	}
	x.start(p)
	if err := ctx.Err(); err != nil {
		_ = p.Signal(syscall.SIGKILL)
		_, _ = p.Wait()
		return nil, err
	}
	return p, nil
}

// joinRequest checks cfg and returns the OP_EXEC record of its request.
func (sb *Sandbox) joinRequest(cfg *ExecConfig) ([]byte, error) {
	refuse := func(err error) error {
		return &StepError{Step: "exec", Err: err, Hint: "pass a command, and environment entries as NAME=VALUE; no NUL bytes, at most 128 KiB and 4000 entries in all"}
	}
	if len(cfg.Command) == 0 || cfg.Command[0] == "" {
		return nil, refuse(errors.New("no command to run"))
	}
	dir := cfg.Dir
	if dir == "" {
		dir = Workdir
	}
	if !strings.HasPrefix(dir, "/") || strings.IndexByte(dir, 0) >= 0 {
		return nil, &StepError{Step: "exec", Err: fmt.Errorf("working directory %q is not an absolute path", dir), Hint: "give the directory as the sandbox sees it, e.g. " + Workdir}
	}
	for _, a := range cfg.Command {
		if strings.IndexByte(a, 0) >= 0 {
			return nil, refuse(fmt.Errorf("argument %q holds a NUL byte", a))
		}
	}
	for _, kv := range cfg.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" || strings.IndexByte(kv, 0) >= 0 {
			return nil, refuse(fmt.Errorf("environment entry %q: want NAME=VALUE", kv))
		}
	}
	env := mergeEnv(sb.agentEnv, []string{"TERM=dumb"})
	if cfg.TTY {
		env = sb.agentEnv
		for _, kv := range env {
			if kv == "TERM=dumb" {
				env = mergeEnv(env, []string{"TERM=xterm-256color"})
			}
		}
	}
	env = mergeEnv(env, cfg.Env)
	if len(cfg.Command)+len(env) > maxJoinArgs {
		return nil, refuse(fmt.Errorf("%d arguments and environment entries: at most %d", len(cfg.Command)+len(env), maxJoinArgs))
	}
	var p program
	p.exec(cfg.Command, dir, cfg.TTY, env)
	if len(p.b) > maxJoinRequest-64 {
		return nil, refuse(fmt.Errorf("command and environment take %d bytes: at most %d", len(p.b), maxJoinRequest-64))
	}
	return p.b, nil
}

// stoppedErr is Exec's refusal once the agent has exited.
func (sb *Sandbox) stoppedErr() error {
	return &StepError{Step: "exec", Err: fmt.Errorf("sandbox %s: %w", sb.name, ErrStopped),
		Hint: "a sandbox lives as long as its agent: start it again, then run the command in it"}
}

// sendJoin sends one request, and files as its SCM_RIGHTS, to the init.
func (sb *Sandbox) sendJoin(b []byte, files []*os.File) error {
	var rights []byte
	if len(files) > 0 {
		fds := make([]int, len(files))
		for i, f := range files {
			fds[i] = int(f.Fd())
		}
		rights = unix.UnixRights(fds...)
	}
	sb.joins.sendMu.Lock()
	defer sb.joins.sendMu.Unlock()
	rc, err := sb.status.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Write(func(fd uintptr) bool {
		serr = unix.Sendmsg(int(fd), b, rights, nil, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL)
		return serr != unix.EAGAIN
	})
	runtime.KeepAlive(files)
	if err == nil {
		err = serr
	}
	return err
}

// dispatch hands a status message about a joined process to it.
func (t *joinTable) dispatch(sb *Sandbox, msg *statusMsg) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case msg.Join != nil:
		p := t.procs[msg.Join.ID]
		if p == nil {
			return
		}
		if e := msg.Join.Error; e != nil {
			delete(t.procs, p.id)
			p.startErr = e.err()
		} else {
			p.pid = msg.Join.Pid
		}
		close(p.started)
	case msg.Joined != nil:
		p := t.procs[msg.Joined.ID]
		if p == nil {
			return
		}
		delete(t.procs, p.id)
		p.code = msg.Joined.Code
		close(p.exited)
	}
}

// end refuses new joins once the agent has exited (or the init is gone),
// and ends the processes whose exit the init did not report.
func (t *joinTable) end(sb *Sandbox) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.ended = true
	for id, p := range t.procs {
		delete(t.procs, id)
		select {
		case <-p.started:
			p.code = 128 + int(syscall.SIGKILL)
			p.err = fmt.Errorf("sandbox %s: init: ended without reporting the exit of joined process %d", sb.name, p.pid)
			close(p.exited)
		default:
			p.startErr = sb.stoppedErr()
			close(p.started)
		}
	}
}

// forget drops a request that was never sent.
func (t *joinTable) forget(id uint64) {
	t.mu.Lock()
	delete(t.procs, id)
	t.mu.Unlock()
}

// Pid returns the process's pid in the sandbox's pid namespace.
func (p *Process) Pid() int { return p.pid }

// Wait waits for the process to exit and for its output to be copied, and
// returns its exit code (128+N when signal N killed it). The error is
// non-nil only when the sandbox failed to report it. Output that the
// process's descendants still write after it exited (a background job
// holding its stdout) is copied for a short while only (execDrain).
func (p *Process) Wait() (int, error) {
	<-p.exited
	p.finished.Do(p.io.finish)
	return p.code, p.err
}

// Signal sends sig to the process's process group (it is a session leader,
// as the agent is). It returns os.ErrProcessDone once the process exited.
func (p *Process) Signal(sig os.Signal) error {
	s, ok := sig.(syscall.Signal)
	if !ok {
		return errors.New("unsupported signal type")
	}
	select {
	case <-p.exited:
		return os.ErrProcessDone
	default:
	}
	var prog program
	prog.op(opJoinSignal, "signal", p.id, int(s))
	if err := p.sb.sendJoin(prog.b, nil); err != nil {
		return fmt.Errorf("signal joined process %d: %w", p.pid, err)
	}
	return nil
}

// Resize sets the process's pseudo-terminal's size; the kernel sends
// SIGWINCH to its foreground job. It does nothing without a TTY.
func (p *Process) Resize(ws WindowSize) error {
	if p.io.ptm == nil {
		return nil
	}
	return unix.IoctlSetWinsize(rawFd(p.io.ptm), unix.TIOCSWINSZ, &unix.Winsize{Row: ws.Rows, Col: ws.Cols})
}
