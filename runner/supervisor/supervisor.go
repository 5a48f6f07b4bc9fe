// Package supervisor owns one running sandbox: the sandbox itself
// (runner/sandbox), its egress proxy and DNS (runner/egress), the audit
// log, approvals, the state record in the sandbox's directory and the
// versioned control API on its unix socket. A launcher (runner/cli) turns
// flags into a Config, calls New, Start and Wait, and prints; the
// supervisor runs in the launcher's process, in the foreground or, for a
// detached sandbox, in a re-executed process of its own session.
package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nemoclaw/nemoclaw/runner/egress"
	"github.com/nemoclaw/nemoclaw/runner/gpu"
	"github.com/nemoclaw/nemoclaw/runner/inference"
	"github.com/nemoclaw/nemoclaw/runner/policy"
	"github.com/nemoclaw/nemoclaw/runner/sandbox"
)

// Paths inside the sandbox where the proxy's trust material appears.
const (
	sandboxCABundle = "/run/nemoclaw/ca-bundle.pem"
	sandboxCACert   = "/run/nemoclaw/ca.pem"
	sandboxProxyURL = "http://127.0.0.1:3128"
)

// Config describes the sandbox a supervisor runs.
type Config struct {
	// Name is the sandbox name (required; sandbox.NewName makes one).
	Name string
	// Home is $NEMOCLAW_HOME.
	Home string
	// Policy is the sandbox policy (required).
	Policy *policy.Policy
	// Command is the agent's argv.
	Command []string
	// Env is added to the agent's environment.
	Env []string
	// Workdir, KeepWorkspace, TTY, WindowSize and StopTimeout are
	// sandbox.Config's.
	Workdir       string
	KeepWorkspace bool
	TTY           bool
	WindowSize    *sandbox.WindowSize
	StopTimeout   time.Duration
	// Stdin, Stdout and Stderr are the agent's streams (nil: /dev/null).
	// A detached supervisor leaves them nil: the agent's output then goes
	// to AgentLogFile in the sandbox's directory.
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Approvals holds refused requests for an operator's decision, up to
	// ApprovalTimeout.
	Approvals       bool
	ApprovalTimeout time.Duration
	// Blueprint and BlueprintVersion are recorded for `sandbox list`.
	Blueprint, BlueprintVersion string
	// Detached marks a supervisor that outlives its launcher: its
	// directory is kept after the run, and the agent's output is logged.
	Detached bool
	// Logger receives the supervisor's, the sandbox's and the proxy's log
	// (nil: discarded). The launcher points it at LogFile (see OpenLog),
	// never at the agent's terminal.
	Logger *slog.Logger
	// Reservation is the directory, lock and CA made ahead for Name (nil:
	// New makes them).
	Reservation *Reservation
	// GPUs are the GPUs passed through (zero: none), claimed for this
	// sandbox while it runs; GPU says where they are (gpu.go).
	GPUs gpu.Request
	GPU  GPUConfig
	// Inference is the sandbox's inference routes and backend provider
	// (nil: inference.local answers 503, no route).
	Inference *InferenceConfig
	// Tools is sandbox.Config.Tools: a read-only tools tree.
	Tools string
}

// Supervisor runs one sandbox. Its methods are called from one goroutine
// (New, Start, Wait, then Close or Finish); the control API it serves
// runs on others.
type Supervisor struct {
	cfg   Config
	log   *slog.Logger
	res   *Reservation
	proxy *egress.Proxy
	sbcfg sandbox.Config
	sb    *sandbox.Sandbox
	// gpuRelease drops the sandbox's GPU claim (nil: none).
	gpuRelease func()
	// agentLog is the agent's output file when detached.
	agentLog *os.File
	started  time.Time
	wg       sync.WaitGroup
	// bgDone closes once the background start-up work (state record,
	// control socket) is over: release must not race it.
	bgDone chan struct{}

	// killed is set when Stop killed the sandbox after its timeout: the
	// init then reports nothing, and Wait makes that exit 137.
	killed atomic.Bool

	// startingPrev is the record a StateStarting one replaced (nil: none),
	// put back if the agent never runs; starting says one was written.
	startingPrev []byte
	starting     bool

	mu     sync.Mutex
	ctl    net.Listener // guarded by mu
	closed bool         // set by Close/Finish: a control socket made after it is closed at once
	rec    Record       // guarded by mu

	// router serves inference.local (through the proxy and on the
	// sandbox's 127.0.0.2 listeners).
	router *inference.Router
}

// RefusedError is a policy the proxy refused: the launcher reports it as a
// refusal (exit code 3).
type RefusedError struct{ Err error }

// Error implements error.
func (e *RefusedError) Error() string { return e.Err.Error() }

// Unwrap returns the proxy's error.
func (e *RefusedError) Unwrap() error { return e.Err }

// New takes the sandbox's directory (waiting for a Reservation made
// ahead), builds its egress proxy and plans the sandbox. Nothing runs until
// Start. On error nothing of the sandbox is left.
func New(cfg Config) (*Supervisor, error) {
	if cfg.Name == "" || cfg.Policy == nil {
		return nil, errors.New("supervisor: Config.Name and Config.Policy are required")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	res := cfg.Reservation
	if res == nil || res.name != cfg.Name {
		if res != nil {
			go res.Release() // made for another name
		}
		res = NewReservation(cfg.Home, cfg.Name)
		res.Make()
	}
	if err := res.wait(); err != nil {
		return nil, err
	}
	notes := &agentNotes{}
	var proxy atomic.Pointer[egress.Proxy]
	router, err := newRouter(&cfg, proxy.Load)
	if err != nil {
		res.Release()
		return nil, err
	}
	s := &Supervisor{cfg: cfg, log: log, res: res, router: router}
	s.markStarting()
	p, err := egress.New(egress.Config{
		Inference:       router,
		OnModelRefusal:  notes.note,
		Sandbox:         cfg.Name,
		Policy:          cfg.Policy,
		Logger:          log,
		AuditLog:        res.audit,
		Approvals:       cfg.Approvals,
		ApprovalTimeout: cfg.ApprovalTimeout,
		ApprovalsFile:   filepath.Join(res.dir, ApprovalsFile),
		CA:              res.ca,
	})
	if err != nil {
		s.unmarkStarting()
		res.Release()
		return nil, &RefusedError{fmt.Errorf("sandbox: %w\n  what to do: fix the network_policies entry named above (check it with `nemoclaw policy validate FILE`)", err)}
	}
	proxy.Store(p)
	s.proxy = p
	sc := sandbox.Config{
		Name: cfg.Name, Workdir: cfg.Workdir, Policy: cfg.Policy, Command: cfg.Command, Env: cfg.Env,
		Stdin: cfg.Stdin, Stdout: cfg.Stdout, Stderr: cfg.Stderr, TTY: cfg.TTY, WindowSize: cfg.WindowSize,
		Logger: log, Home: cfg.Home, KeepWorkspace: cfg.KeepWorkspace, StopTimeout: cfg.StopTimeout,
		Tools: cfg.Tools,
	}
	if cfg.Detached && cfg.Stdout == nil {
		f, err := os.OpenFile(filepath.Join(res.dir, AgentLogFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND|syscall.O_NOFOLLOW, 0o600)
		if err != nil {
			p.Close()
			s.unmarkStarting()
			res.Release()
			return nil, fmt.Errorf("sandbox: agent log: %w", err)
		}
		s.agentLog = f
		sc.Stdout, sc.Stderr = f, f
		notes.set(f)
	}
	sc.Network.Proxy, sc.Network.DNS, sc.Network.ProxyPort = true, true, sandbox.DefaultProxyPort
	// inference.local's own listeners, for clients that ignore the proxy
	// variables: only where the sandbox has routes (a plain run pays
	// nothing; the proxy still answers 503 for it).
	sc.Network.Inference = cfg.Inference != nil && len(cfg.Inference.Routes) > 0
	sc.Env = append(sc.Env, p.Env(sandboxProxyURL, sandboxCABundle, sandboxCACert)...)
	// The CA may still be in the making: the sandbox asks for it only
	// once it has planned everything else.
	sc.Files = append(sc.Files,
		sandbox.File{Path: "/etc/resolv.conf", Data: []byte("# nemoclaw: DNS answers only names the sandbox policy allows\nnameserver 127.0.0.1\noptions edns0 trust-ad\n")},
		sandbox.File{Path: sandboxCABundle, From: egress.SystemCABundle(), Later: func() ([]byte, error) {
			pem, err := p.CACertPEM()
			return append([]byte("\n"), pem...), err
		}},
		sandbox.File{Path: sandboxCACert, Later: p.CACertPEM},
	)
	if err := s.passGPUs(&sc); err != nil {
		p.Close()
		res.Release()
		return nil, err
	}
	s.sbcfg = sc
	return s, nil
}

// Dir is the sandbox's directory.
func (s *Supervisor) Dir() string { return s.res.dir }

// Name is the sandbox's name.
func (s *Supervisor) Name() string { return s.cfg.Name }

// Sandbox is the running sandbox (nil before Start).
func (s *Supervisor) Sandbox() *sandbox.Sandbox { return s.sb }

// Start starts the sandbox, serves its proxy and DNS, and, off the agent's
// critical path, writes its state record and opens the control socket.
func (s *Supervisor) Start(ctx context.Context) error {
	sb, err := sandbox.Start(ctx, s.sbcfg)
	if err != nil {
		return err
	}
	s.sb, s.started = sb, time.Now()
	// In memory only: written by startBackground, and by release for a
	// run that leaves its directory.
	s.rec = Record{
		Name: s.cfg.Name, State: StateRunning, SupervisorPid: os.Getpid(),
		InitPid: sb.Pid(), Started: s.started,
		Blueprint: s.cfg.Blueprint, Version: s.cfg.BlueprintVersion,
		Workspace: s.workspace(), Detached: s.cfg.Detached, Command: s.cfg.Command,
	}
	s.proxy.SetNetnsPid(sb.Pid())
	if l := sb.ProxyListener(); l != nil {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := s.proxy.Serve(l); err != nil {
				s.log.Warn("egress proxy", "err", err)
			}
		}()
	}
	if pc, l := sb.DNSPacketConn(), sb.DNSListener(); pc != nil || l != nil {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := s.proxy.ServeDNS(pc, l); err != nil {
				s.log.Warn("egress dns", "err", err)
			}
		}()
	}
	s.serveInference()
	// The record and the control socket cost disk inodes: made off the
	// agent's critical path.
	s.bgDone = make(chan struct{})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.startBackground()
	}()
	return nil
}

// quickRun is how long a foreground run that keeps nothing runs before
// its record and control socket are made (startBackground).
const quickRun = 20 * time.Millisecond

// startBackground writes the running record and serves the control socket.
func (s *Supervisor) startBackground() {
	if !s.keeps() {
		// A foreground run that keeps nothing shows up after
		// quickRun: a quick command (an agent may run one per tool
		// call) is over before, and pays for no record or socket
		// inodes that its end would only remove again.
		t := time.NewTimer(quickRun)
		select {
		case <-s.sb.Done():
			t.Stop()
			close(s.bgDone)
			return
		case <-t.C:
		}
	}
	// The socket first: a record that says running promises a supervisor
	// that answers (a `sandbox stop` right after it sees the record).
	ctl, lerr := egress.ListenControl(filepath.Join(s.res.dir, ControlSocket))
	cgroup := s.sb.Cgroup()
	supStart, _ := procStart(os.Getpid())
	initStart, _ := procStart(s.sb.Pid())
	s.mu.Lock()
	s.rec.Cgroup, s.rec.SupervisorStart, s.rec.InitStart = cgroup, supStart, initStart
	rec := s.rec
	s.mu.Unlock()
	if err := writeRecord(s.res.dir, &rec); err != nil {
		s.log.Warn("state record: `nemoclaw sandbox list` will not show this sandbox as running", "err", err)
	}
	// A sandbox with a workspace on disk may be brought back even after
	// its supervisor died: its launch is written now. A quick run's is
	// written at its end, if the run leaves anything (release).
	if s.keeps() {
		if err := writeLaunch(s.res.dir, launchOf(&s.cfg, s.cfg.Policy)); err != nil {
			s.log.Warn("launch record: `nemoclaw sandbox start` cannot bring this sandbox back", "err", err)
		}
	}
	if lerr != nil {
		close(s.bgDone)
		s.log.Warn("control socket: status, stop, live policy changes and approvals are unavailable for this run", "err", lerr)
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = ctl.Close()
		close(s.bgDone)
		return
	}
	s.ctl = ctl
	s.mu.Unlock()
	close(s.bgDone)
	s.serveControl(ctl)
}

// workspace is the host path of the agent's /sandbox, or "" when it is the
// sandbox's own memory.
func (s *Supervisor) workspace() string {
	switch {
	case s.cfg.Workdir != "":
		if abs, err := filepath.Abs(s.cfg.Workdir); err == nil {
			return abs
		}
		return s.cfg.Workdir
	case s.cfg.KeepWorkspace:
		return filepath.Join(s.res.dir, "workspace")
	}
	return ""
}

// Ready is closed once the state record is written and the control socket
// serves (or failed to): what a detached supervisor waits for before it
// tells its launcher that the sandbox runs, so that `sandbox list` right
// after shows it. Nil before Start.
func (s *Supervisor) Ready() <-chan struct{} { return s.bgDone }

// Wait waits for the agent to exit and returns its exit code.
func (s *Supervisor) Wait() (int, error) {
	code, err := s.sb.Wait()
	if err != nil && s.killed.Load() {
		s.log.Info("sandbox killed after its stop timeout", "cause", err)
		code, err = 128+int(syscall.SIGKILL), nil
	}
	s.mu.Lock()
	s.rec.ExitCode = &code
	s.mu.Unlock()
	return code, err
}

// Stop asks the agent to end with SIGTERM and, if it has not after
// timeout (negative: never), kills everything in the sandbox. It returns
// at once; Wait returns when the agent is gone.
func (s *Supervisor) Stop(timeout time.Duration) error {
	if s.sb == nil {
		return errors.New("stop: the sandbox is not running")
	}
	s.log.Info("stopping", "timeout", timeout)
	if err := s.sb.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop %s: %w", s.cfg.Name, err)
	}
	if timeout >= 0 {
		go func() {
			select {
			case <-s.sb.Done():
			case <-time.After(timeout):
				s.log.Warn("stop: the agent outlived its stop timeout: killing the sandbox", "timeout", timeout)
				s.killed.Store(true)
				_ = s.sb.Signal(syscall.SIGKILL) // the init: the pid namespace ends with it
			}
		}()
	}
	return nil
}

// Close stops what still runs (the sandbox, the proxy, the control
// socket), records how the run ended and releases the sandbox's name.
func (s *Supervisor) Close() error {
	var errs []error
	if s.sb != nil {
		if err := s.sb.Close(); err != nil {
			errs = append(errs, fmt.Errorf("sandbox cleanup: %w", err))
		}
	}
	errs = append(errs, s.proxy.Close())
	s.stopControl(true)
	s.wg.Wait()
	errs = append(errs, s.release())
	return errors.Join(errs...)
}

// Finish is Close for a process that exits next: it writes the audit
// summaries, closes the audit log and removes the control socket, but
// leaves the proxy's sockets, and the goroutines serving them, to the exit.
func (s *Supervisor) Finish() error {
	var errs []error
	if s.sb != nil {
		if err := s.sb.Close(); err != nil {
			errs = append(errs, fmt.Errorf("sandbox cleanup: %w", err))
		}
	}
	errs = append(errs, s.proxy.Finish())
	s.stopControl(false)
	errs = append(errs, s.release())
	return errors.Join(errs...)
}

// stopControl stops the control socket from being made or, with closeIt,
// served; it waits for its making, which would otherwise race the removal
// in release (or outlive the process, leaving a socket file behind).
func (s *Supervisor) stopControl(closeIt bool) {
	s.mu.Lock()
	s.closed = true
	if closeIt && s.ctl != nil {
		_ = s.ctl.Close()
	}
	s.mu.Unlock()
	if s.bgDone != nil {
		<-s.bgDone
	}
}

// release closes the audit log, removes the control socket, records the
// end of the run (or, for a quick run that left nothing worth keeping,
// removes the directory) and gives up the name, last.
func (s *Supervisor) release() error {
	err := s.res.audit.Close()
	if s.gpuRelease != nil {
		s.gpuRelease()
	}
	if s.agentLog != nil {
		s.agentLog.Close()
		if s.sb == nil {
			_ = os.Remove(s.agentLog.Name()) // the agent never ran
		}
	}
	dir := s.res.dir
	_ = os.Remove(filepath.Join(dir, ControlSocket))
	if s.sb == nil {
		s.unmarkStarting()
		if st, err := os.Lstat(filepath.Join(dir, LogFile)); err == nil && st.Mode().IsRegular() && st.Size() == 0 {
			_ = os.Remove(filepath.Join(dir, LogFile)) // made for a run that never started, and empty
		}
	}
	if s.sb != nil {
		s.mu.Lock()
		rec := s.rec
		s.mu.Unlock()
		if rec.Name != "" {
			if s.disposable() {
				_ = os.Remove(filepath.Join(dir, StateFile))
				_ = os.Remove(filepath.Join(dir, LaunchFile))
			} else {
				if s.proxy.Generation() > 1 || !s.keeps() { // live changes: start brings them back
					if werr := writeLaunch(dir, s.launch()); werr != nil {
						s.log.Warn("launch record", "err", werr)
					}
				}
				rec.State, rec.Ended = StateStopped, time.Now()
				if werr := writeRecord(dir, &rec); werr != nil {
					s.log.Warn("state record", "err", werr)
				}
			}
		}
	}
	if s.res.madeDir && !s.res.audit.made() {
		_ = os.Remove(dir) // only if still empty (a kept workspace, approvals, a log)
	}
	if s.res.lock != nil {
		s.res.lock.Close() // last: the name is free once its socket is gone
	}
	return err
}

// markStarting records, for a sandbox that outlives its run, that its
// supervisor (this process) is setting it up: a supervisor killed before
// its agent runs is then listed as having died while starting, not as
// stopped. A quick foreground run pays for no such write.
func (s *Supervisor) markStarting() {
	if !s.keeps() {
		return
	}
	prev, err := os.ReadFile(filepath.Join(s.res.dir, StateFile))
	if err == nil {
		s.startingPrev = prev
	}
	pid := os.Getpid()
	start, _ := procStart(pid)
	// Cgroup is where runner/sandbox will make the sandbox's: destroy
	// removes it if a kill leaves it behind before the running record
	// names it.
	rec := Record{
		Name: s.cfg.Name, State: StateStarting, SupervisorPid: pid, SupervisorStart: start, Started: time.Now(),
		Blueprint: s.cfg.Blueprint, Version: s.cfg.BlueprintVersion, Detached: s.cfg.Detached, Command: s.cfg.Command,
		Cgroup: sandbox.PlannedCgroup(s.cfg.Name),
	}
	if err := writeRecord(s.res.dir, &rec); err != nil {
		s.log.Warn("state record: a kill before the agent runs will show as stopped", "err", err)
		return
	}
	s.starting = true
}

// unmarkStarting puts back the record markStarting replaced (or removes
// its own) when the agent never ran.
func (s *Supervisor) unmarkStarting() {
	if !s.starting {
		return
	}
	s.starting = false
	path := filepath.Join(s.res.dir, StateFile)
	if s.startingPrev == nil {
		_ = os.Remove(path)
		return
	}
	var prev Record
	if err := json.Unmarshal(s.startingPrev, &prev); err == nil {
		if err := writeRecord(s.res.dir, &prev); err != nil {
			s.log.Warn("state record", "err", err)
		}
	}
}

// keeps reports whether the sandbox outlives its run: detached, or with
// its workspace on disk.
func (s *Supervisor) keeps() bool {
	return s.cfg.Detached || s.cfg.KeepWorkspace || s.cfg.Workdir != ""
}

// disposable reports whether the run leaves nothing worth a record: a
// foreground run in a directory it made, with no audit log, kept
// workspace, saved approvals or log to show for it (the directory then
// goes too, and `sandbox list` never sees it).
func (s *Supervisor) disposable() bool {
	if !s.res.madeDir || s.cfg.Detached || s.res.audit.made() {
		return false
	}
	ents, err := os.ReadDir(s.res.dir)
	if err != nil {
		return false
	}
	for _, e := range ents {
		if e.Name() != StateFile && e.Name() != LaunchFile {
			return false
		}
	}
	return true
}

// Info is the supervisor's own view of its sandbox, for the status call.
func (s *Supervisor) Info() Info {
	s.mu.Lock()
	rec := s.rec
	s.mu.Unlock()
	in := infoFromRecord(&rec)
	in.State = StateRunning
	if s.sb != nil {
		in.Pid = s.sb.Pid()
		select {
		case <-s.sb.Done():
			in.State = StateStopped
		default:
		}
	}
	in.Generation = s.proxy.Generation()
	in.Pending = len(s.proxy.Pending())
	return in
}
