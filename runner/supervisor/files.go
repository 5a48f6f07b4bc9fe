package supervisor

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/nemoclaw/nemoclaw/runner/egress"
)

// Names of the files in a sandbox's directory, $NEMOCLAW_HOME/sandboxes/NAME.
const (
	// StateFile records who runs the sandbox and how it ended (Record).
	StateFile = "supervisor.json"
	// LogFile is the supervisor's own log: egress warnings, set-up steps.
	LogFile = "supervisor.log"
	// AgentLogFile is the agent's output when the supervisor is detached.
	AgentLogFile = "agent.log"
	// AuditFile is the egress audit log, one JSON event a line.
	AuditFile = "audit.jsonl"
	// ControlSocket is the control API's unix socket.
	ControlSocket = "control.sock"
	// ApprovalsFile keeps the approvals saved for the next run.
	ApprovalsFile = "approvals.json"
)

// Dir is sandbox name's directory under home ($NEMOCLAW_HOME).
func Dir(home, name string) string { return filepath.Join(home, "sandboxes", name) }

// Reservation is the part of a sandbox's set-up that needs no policy: its
// directory, locked for the run (lockDir), the egress CA (a key generation
// and a signature, still being made) and the audit log. Making it is the
// slowest part of the egress set-up, so a launcher starts it before it has
// even parsed its command line (NewReservation, then Make on another
// goroutine) and hands it to New through Config.Reservation.
type Reservation struct {
	home, name string
	done       chan struct{} // closed by Make

	ca    *egress.CA
	dir   string
	lock  *os.File // dir, flocked for the run
	audit *LazyFile
	err   error
	// madeDir and madeParents say what this run created, for undoing a
	// run that never started, or one that left nothing worth keeping.
	madeDir     bool
	madeParents []string
}

// NewReservation returns the reservation of sandbox name under home, to be
// made by Make.
func NewReservation(home, name string) *Reservation {
	return &Reservation{home: home, name: name, done: make(chan struct{})}
}

// Reserve starts making sandbox name's reservation in the background.
func Reserve(home, name string) *Reservation {
	r := NewReservation(home, name)
	go r.Make()
	return r
}

// Name is the sandbox name the reservation is for.
func (r *Reservation) Name() string { return r.name }

// Make creates and locks the sandbox's directory and starts its CA; it
// must be called once. Its error is reported by New (or dropped by Release).
func (r *Reservation) Make() {
	defer close(r.done)
	r.ca = egress.StartCA(r.name)
	r.dir = Dir(r.home, r.name)
	for d := filepath.Dir(r.dir); ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil || d == filepath.Dir(d) {
			break
		}
		r.madeParents = append(r.madeParents, d) // innermost first
	}
	if err := os.MkdirAll(filepath.Dir(r.dir), 0o700); err != nil {
		r.err = fmt.Errorf("sandbox: egress: %w", err)
		return
	}
	switch err := os.Mkdir(r.dir, 0o700); {
	case err == nil:
		r.madeDir = true
	case !errors.Is(err, fs.ErrExist):
		r.err = fmt.Errorf("sandbox: egress: %w", err)
		return
	}
	if r.lock, r.err = lockDir(r.dir, r.name); r.err != nil {
		return
	}
	r.audit = &LazyFile{Path: filepath.Join(r.dir, AuditFile)}
}

// wait waits for Make and returns its error.
func (r *Reservation) wait() error {
	<-r.done
	return r.err
}

// Release waits for Make, then removes what it created and gives up the
// name: for a reservation no supervisor took (a --help, a bad flag).
func (r *Reservation) Release() {
	<-r.done
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

// lockDir takes the lock on a sandbox's directory for the rest of the run,
// so that a second run under the same name is refused rather than sharing
// the first's audit log, control socket and kept workspace (and removing
// its socket when it ends). The lock is a flock on the directory itself:
// it leaves no file behind and ends with the process, even a killed one.
func lockDir(dir, name string) (*os.File, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("sandbox: lock %s: %w", dir, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("sandbox: name %q is in use: a running sandbox holds %s\n  what to do: choose another --name, or stop that sandbox (nemoclaw sandbox stop %s)", name, dir, name)
		}
		return nil, fmt.Errorf("sandbox: lock %s: %w", dir, err)
	}
	return f, nil
}

// LazyFile is an append-only file created on its first write: a run that
// logs nothing makes no file, and, its directory then empty, leaves nothing
// behind (quick runs under generated names would otherwise pile up a
// directory each). Creating a file costs ~0.1 ms of ext4 work, which then
// falls to whoever writes first, off the start-up path. A failed creation
// is retried on the next write: a log line written before the sandbox's
// directory exists is lost, not every later one.
type LazyFile struct {
	// Path is the file's path; its directory must exist by the first write.
	Path string
	mu   sync.Mutex
	f    *os.File
	// opened stays set once a write made the file, after Close too.
	opened bool
}

// Write appends p, creating the file first if need be.
func (l *LazyFile) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		f, err := os.OpenFile(l.Path, os.O_CREATE|os.O_WRONLY|os.O_APPEND|unix.O_NOFOLLOW, 0o600)
		if err != nil {
			return 0, fmt.Errorf("open %s: %w", l.Path, err)
		}
		l.f, l.opened = f, true
	}
	return l.f.Write(p)
}

// made reports whether a write created (or opened) the file.
func (l *LazyFile) made() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.opened
}

// Close closes the file if a write made it; a later write opens it again.
func (l *LazyFile) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}
