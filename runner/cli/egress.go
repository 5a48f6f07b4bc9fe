package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/nemoclaw/nemoclaw/runner/egress"
	"github.com/nemoclaw/nemoclaw/runner/sandbox"
)

// sandboxFlagHooks let hooks add flags to `sandbox run`.
var sandboxFlagHooks []func(fs *pflag.FlagSet)

// egressFlags are the egress flags of `sandbox run` (one run per process).
var egressFlags struct {
	approvals bool
	timeout   time.Duration
}

func init() {
	sandboxHooks = append(sandboxHooks, func() SandboxHook { return &egressHook{} })
	sandboxFlagHooks = append(sandboxFlagHooks, func(fs *pflag.FlagSet) {
		fs.BoolVar(&egressFlags.approvals, "approvals", false,
			"hold requests to destinations outside the policy until an operator decides with \"nemoclaw policy approvals NAME\" (default: refuse at once and list them for approval)")
		fs.DurationVar(&egressFlags.timeout, "approval-timeout", 2*time.Minute, "how long --approvals holds a request")
	})
}

// Paths inside the sandbox where the proxy's trust material appears.
const (
	sandboxCABundle = "/run/nemoclaw/ca-bundle.pem"
	sandboxCACert   = "/run/nemoclaw/ca.pem"
	sandboxProxyURL = "http://127.0.0.1:3128"
)

// egressHook attaches the egress proxy to a sandbox run: every connection
// the agent makes leaves through it, its DNS is answered by it, and the
// control socket lets `nemoclaw policy ...` steer it live.
type egressHook struct {
	proxy   *egress.Proxy
	audit   *lazyFile
	lock    *os.File // the sandbox directory's, held until release
	madeDir bool     // this run made the directory: release removes it if it stayed empty
	sockDir string
	ctl     net.Listener  // closed by Close too: ServeControl may not have registered it yet; guarded by mu
	ctlMade chan struct{} // closed once the control socket is made (or has failed)
	wg      sync.WaitGroup

	// What Warm prepares in the background; warmDone closes when it is
	// ready.
	warmDone chan struct{}
	warm     *egressFiles

	mu     sync.Mutex
	closed bool // set by Close: a control socket made after it is closed at once
}

// egressFiles is the part of the proxy's set-up that needs no policy: its
// CA (a key generation and a signature, still being made), its directory
// and audit log.
type egressFiles struct {
	ca    *egress.CA
	dir   string
	lock  *os.File  // dir, flocked for the run: see lockSandboxDir
	audit *lazyFile // made on its first write
	err   error
	// madeDir and madeParents say what this run created, for undoing a
	// run that never started, or one that logged nothing.
	madeDir     bool
	madeParents []string
}

// undo removes what this run created, then gives up the name.
func (r *egressFiles) undo() {
	if r.lock == nil {
		return
	}
	r.audit.Close()
	if r.madeDir {
		_ = os.Remove(r.dir)
	}
	for _, d := range r.madeParents {
		_ = os.Remove(d) // only if still empty
	}
	r.lock.Close()
}

// lazyFile is an append-only file created on its first write: a run that
// logs nothing makes no audit log, and, its directory then empty, leaves
// nothing behind (quick runs under generated names would otherwise pile up
// a directory each). Creating a file there costs ~0.1 ms of ext4 work,
// which now falls to the audit flusher, off the start-up path.
type lazyFile struct {
	path string
	mu   sync.Mutex
	f    *os.File
	err  error
}

// Write appends p, creating the file first if need be.
func (l *lazyFile) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil && l.err == nil {
		if l.f, l.err = os.OpenFile(l.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); l.err != nil {
			l.f, l.err = nil, fmt.Errorf("audit log: %w", l.err)
		}
	}
	if l.err != nil {
		return 0, l.err
	}
	return l.f.Write(p)
}

// made reports whether a write created (or opened) the file.
func (l *lazyFile) made() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f != nil
}

// Close closes the file if a write made it.
func (l *lazyFile) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	return l.f.Close()
}

// lockSandboxDir takes the lock on a sandbox's directory for the rest of
// the run, so that a second run under the same name is refused rather
// than sharing the first's audit log, control socket and kept workspace
// (and removing its socket when it ends). The lock is a flock on the
// directory itself: it leaves no file behind and ends with the process.
func lockSandboxDir(dir, name string) (*os.File, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("sandbox: lock %s: %w", dir, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("sandbox: name %q is in use: a running sandbox holds %s\n  what to do: choose another --name, or wait for that sandbox to end", name, dir)
		}
		return nil, fmt.Errorf("sandbox: lock %s: %w", dir, err)
	}
	return f, nil
}

// makeEgressFiles makes and locks sandbox name's egress directory (its
// audit log is made on the first event); ca is its CA, possibly still
// being made.
func makeEgressFiles(app *App, name string, ca *egress.CA) (r egressFiles) {
	r.ca = ca
	r.dir = sandboxDir(app, name)
	for d := filepath.Dir(r.dir); ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil || d == filepath.Dir(d) {
			break
		}
		r.madeParents = append(r.madeParents, d) // innermost first
	}
	if err := os.MkdirAll(filepath.Dir(r.dir), 0o700); err != nil {
		r.err = fmt.Errorf("sandbox: egress: %w", err)
		return r
	}
	switch err := os.Mkdir(r.dir, 0o700); {
	case err == nil:
		r.madeDir = true
	case !errors.Is(err, fs.ErrExist):
		r.err = fmt.Errorf("sandbox: egress: %w", err)
		return r
	}
	if r.lock, r.err = lockSandboxDir(r.dir, name); r.err != nil {
		return r
	}
	r.audit = &lazyFile{path: filepath.Join(r.dir, "audit.jsonl")}
	return r
}

// Warm makes the egress files on another goroutine while the caller loads
// the policy; name is the one Prepare will find in its Config.
func (h *egressHook) Warm(app *App, name string) {
	if done, files := takeWarmFiles(name); done != nil {
		h.warmDone, h.warm = done, files // made while the command line was parsed
		return
	}
	h.warmDone, h.warm = make(chan struct{}), &egressFiles{}
	go func() {
		defer close(h.warmDone)
		*h.warm = makeEgressFiles(app, name, egress.StartCA(name))
	}()
}

// sandboxDir is $NEMOCLAW_HOME/sandboxes/<name>.
func sandboxDir(app *App, name string) string { return filepath.Join(app.Home, "sandboxes", name) }

// Prepare builds the proxy (CA, policy, audit log) and adds the sandbox's
// proxy environment, resolv.conf and CA files to cfg.
func (h *egressHook) Prepare(app *App, cfg *sandbox.Config) error {
	if cfg.Name == "" {
		cfg.Name = sandbox.NewName()
	}
	var ef egressFiles
	if h.warmDone != nil {
		<-h.warmDone
		ef = *h.warm
		h.warmDone = nil // Prepare owns the files now
	} else {
		ef = makeEgressFiles(app, cfg.Name, egress.StartCA(cfg.Name))
	}
	if ef.err != nil {
		return ef.err
	}
	dir, f := ef.dir, ef.audit
	h.lock, h.madeDir = ef.lock, ef.madeDir
	p, err := egress.New(egress.Config{
		Sandbox:         cfg.Name,
		Policy:          cfg.Policy,
		Logger:          app.Logger,
		AuditLog:        f,
		Approvals:       egressFlags.approvals,
		ApprovalTimeout: egressFlags.timeout,
		ApprovalsFile:   filepath.Join(dir, "approvals.json"),
		CA:              ef.ca,
	})
	if err != nil {
		ef.undo()
		return Refused(fmt.Errorf("sandbox: %w\n  what to do: fix the network_policies entry named above (check it with `nemoclaw policy validate FILE`)", err))
	}
	h.proxy, h.audit, h.sockDir = p, f, dir
	cfg.Network.Proxy, cfg.Network.DNS, cfg.Network.ProxyPort = true, true, sandbox.DefaultProxyPort
	cfg.Env = append(cfg.Env, p.Env(sandboxProxyURL, sandboxCABundle, sandboxCACert)...)
	// The CA may still be in the making: the sandbox asks for it only
	// once it has planned everything else.
	cfg.Files = append(cfg.Files,
		sandbox.File{Path: "/etc/resolv.conf", Data: []byte("# nemoclaw: DNS answers only names the sandbox policy allows\nnameserver 127.0.0.1\noptions edns0 trust-ad\n")},
		sandbox.File{Path: sandboxCABundle, From: egress.SystemCABundle(), Later: func() ([]byte, error) {
			pem, err := p.CACertPEM()
			return append([]byte("\n"), pem...), err
		}},
		sandbox.File{Path: sandboxCACert, Later: p.CACertPEM},
	)
	return nil
}

// Attach serves the sandbox's proxy and DNS listeners and the control socket.
func (h *egressHook) Attach(app *App, sb *sandbox.Sandbox) error {
	if h.proxy == nil {
		return nil
	}
	h.proxy.SetNetnsPid(sb.Pid())
	if l := sb.ProxyListener(); l != nil {
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			if err := h.proxy.Serve(l); err != nil {
				app.Logger.Warn("egress proxy", "err", err)
			}
		}()
	}
	if pc, l := sb.DNSPacketConn(), sb.DNSListener(); pc != nil || l != nil {
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			if err := h.proxy.ServeDNS(pc, l); err != nil {
				app.Logger.Warn("egress dns", "err", err)
			}
		}()
	}
	// The control socket (for `nemoclaw policy ...`) is made off the
	// agent's critical path: creating a socket file costs a disk inode.
	h.wg.Add(1)
	h.ctlMade = make(chan struct{})
	go func() {
		defer h.wg.Done()
		ctl, err := egress.ListenControl(filepath.Join(h.sockDir, "control.sock"))
		if err != nil {
			close(h.ctlMade)
			app.Logger.Warn("egress control socket: live policy changes and approvals are unavailable for this run", "err", err)
			return
		}
		h.mu.Lock()
		if h.closed {
			h.mu.Unlock()
			_ = ctl.Close()
			close(h.ctlMade)
			return
		}
		h.ctl = ctl
		h.mu.Unlock()
		close(h.ctlMade)
		if err := h.proxy.ServeControl(ctl); err != nil {
			app.Logger.Warn("egress control", "err", err)
		}
	}()
	return nil
}

// Finish is Close for a process that exits next: it writes the audit
// summaries, closes the audit log and removes the control socket, but
// leaves the proxy's sockets, and the goroutines serving them, to the exit.
func (h *egressHook) Finish() error {
	if h.proxy == nil {
		return h.Close()
	}
	err := h.proxy.Finish()
	h.mu.Lock()
	h.closed = true // a control socket made from now on is closed at once
	h.mu.Unlock()
	if h.ctlMade != nil {
		// Not its serving: only its making, which would otherwise
		// race the removal in release (or outlive the process,
		// leaving a socket file behind).
		<-h.ctlMade
	}
	return h.release(err)
}

// Close stops the proxy, writes the audit summaries and removes the socket.
func (h *egressHook) Close() error {
	if h.proxy == nil {
		// The run ended before Prepare (a bad policy, say): leave no
		// trace of a sandbox that never started.
		if h.warmDone != nil {
			<-h.warmDone
			h.warm.undo()
		}
		return nil
	}
	err := h.proxy.Close()
	h.mu.Lock()
	h.closed = true
	if h.ctl != nil {
		_ = h.ctl.Close()
	}
	h.mu.Unlock()
	h.wg.Wait()
	return h.release(err)
}

// release closes the audit log and removes the control socket's file, once
// nothing serves or makes it; err is the proxy's, kept first.
func (h *egressHook) release(err error) error {
	if cerr := h.audit.Close(); err == nil {
		err = cerr
	}
	_ = os.Remove(filepath.Join(h.sockDir, "control.sock"))
	if h.madeDir && !h.audit.made() {
		// Nothing logged: leave nothing (lazyFile).
		_ = os.Remove(h.sockDir) // only if still empty (a --keep workspace, approvals)
	}
	if h.lock != nil {
		h.lock.Close() // last: the name is free once its socket is gone
	}
	return err
}
