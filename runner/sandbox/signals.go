package sandbox

/*
int nc_sig_catch(void);
void nc_sig_forward(int pidfd, int ptm, int tty);
int nc_sig_held(int sig);
void nc_sig_release(int ignore_hup);
*/
import "C"

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// SignalForwarder passes the signals a user sends to the launcher on to a
// sandbox: SIGINT, SIGTERM, SIGHUP and SIGQUIT to its agent's process group
// (through the init), SIGWINCH as a resize of its pseudo-terminal. The
// handlers are C (sigfwd.c), not os/signal, whose set-up cost the start-up
// path about 0.6 ms.
type SignalForwarder struct {
	mu      sync.Mutex
	stopped bool
	pidfd   int      // our own pidfd of the init, closed by Stop
	tty     *os.File // kept alive while the handlers may use its fd
	sb      *Sandbox // likewise, for its pseudo-terminal
}

// catchMu makes CatchSignals exclusive: the handlers are process-wide.
var catchMu sync.Mutex

// CatchSignals starts holding those signals: until Forward names the
// sandbox they are kept (at most one of each), then passed on. It fails if
// another SignalForwarder is active in this process. Stop ends it.
func CatchSignals() (*SignalForwarder, error) {
	catchMu.Lock()
	defer catchMu.Unlock()
	if e := C.nc_sig_catch(); e < 0 {
		return nil, fmt.Errorf("catch signals: %w", syscall.Errno(-e))
	}
	return &SignalForwarder{pidfd: -1}, nil
}

// Forward passes the held signals, and those to come, to sb; tty, when
// not nil, is the terminal whose size sb's pseudo-terminal follows.
func (f *SignalForwarder) Forward(sb *Sandbox, tty *os.File) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		return errors.New("forward signals: stopped")
	}
	if sb.pidfd < 0 {
		return fmt.Errorf("forward signals: no pidfd for init %d (closed sandbox, or a kernel without pidfd_open)", sb.pid)
	}
	// Our own copy, closed by Stop (the sandbox's goes with Close).
	pidfd, err := unix.FcntlInt(uintptr(sb.pidfd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("forward signals: pidfd of init %d: %w", sb.pid, err)
	}
	ptm, ttyFd := -1, -1
	if sb.ptm != nil && tty != nil {
		ptm, ttyFd = rawFd(sb.ptm), rawFd(tty)
	}
	f.pidfd, f.tty, f.sb = pidfd, tty, sb
	C.nc_sig_forward(C.int(pidfd), C.int(ptm), C.int(ttyFd))
	return nil
}

// Stop puts the previous handlers back. Call it before closing the
// sandbox (whose terminal the handlers use); it may be called again.
func (f *SignalForwarder) Stop() { f.stop(false) }

// StopIgnoringHangup is Stop for a process that exits next, but leaves
// SIGHUP ignored: a terminal that hangs up as its sandbox ends (often the
// hangup that ended the agent) must not turn the agent's exit status into
// the launcher's death by SIGHUP.
func (f *SignalForwarder) StopIgnoringHangup() { f.stop(true) }

func (f *SignalForwarder) stop(ignoreHup bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		return
	}
	f.stopped = true
	ign := C.int(0)
	if ignoreHup {
		ign = 1
	}
	catchMu.Lock()
	C.nc_sig_release(ign)
	catchMu.Unlock()
	if f.pidfd >= 0 {
		unix.Close(f.pidfd)
	}
	f.tty, f.sb = nil, nil
}

// rawFd returns f's descriptor without File.Fd's switch to blocking mode
// (the pseudo-terminal is served through the netpoller); -1 if f has none.
func rawFd(f *os.File) int {
	fd := -1
	if rc, err := f.SyscallConn(); err == nil {
		_ = rc.Control(func(u uintptr) { fd = int(u) })
	}
	return fd
}

// signalHeld reports whether sig is being held (for tests).
func signalHeld(sig syscall.Signal) bool { return C.nc_sig_held(C.int(sig)) != 0 }
