package sandbox

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY opens a new pseudo-terminal pair from the host's /dev/ptmx.
func openPTY(ws *WindowSize) (master, slave *os.File, err error) {
	// Non-blocking, so that the relays wait in the netpoller: a thread
	// blocked in read() would hold the master open past hangUpPTY.
	mfd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open /dev/ptmx: %w", err)
	}
	if err := unix.IoctlSetPointerInt(mfd, unix.TIOCSPTLCK, 0); err != nil {
		unix.Close(mfd)
		return nil, nil, fmt.Errorf("unlock pty: %w", err)
	}
	if ws != nil {
		if err := unix.IoctlSetWinsize(mfd, unix.TIOCSWINSZ, &unix.Winsize{Row: ws.Rows, Col: ws.Cols}); err != nil {
			unix.Close(mfd)
			return nil, nil, fmt.Errorf("set window size: %w", err)
		}
	}
	// TIOCGPTPEER opens the slave without a path lookup.
	sfd, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(mfd), unix.TIOCGPTPEER, uintptr(unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC))
	if errno != 0 {
		unix.Close(mfd)
		return nil, nil, fmt.Errorf("open pty slave: %w", errno)
	}
	return os.NewFile(uintptr(mfd), "/dev/ptmx"), os.NewFile(sfd, "pty"), nil
}

// hangUpPTY hangs up the agent's terminal because the caller's is gone
// (err says how), as sshd does when its client's connection drops: the
// agent's session gets SIGHUP, and its reads and writes on the terminal
// fail with EIO rather than block forever. The master is released by
// putting /dev/null in its place, not by closing it, so that its
// descriptor, which the SIGWINCH handler may still use, never names
// another file; reads from it then end the output relay.
func (sb *Sandbox) hangUpPTY(err error) {
	sb.hungUp.Do(func() {
		sb.log.Warn("the terminal is gone: hanging up the agent's", "err", err)
		null, e := unix.Open("/dev/null", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if e == nil {
			e = unix.Dup3(null, rawFd(sb.ptm), unix.O_CLOEXEC)
			unix.Close(null)
			// The output relay may be waiting for the master in the
			// netpoller, which hears nothing more from it: wake it.
			_ = sb.ptm.SetReadDeadline(time.Now())
		}
		if e != nil {
			// At least the signal: the agent can still end on its own.
			sb.log.Warn("hang up the agent's terminal: sending SIGHUP instead", "err", e)
			_ = sb.Signal(unix.SIGHUP)
		}
	})
}

// ptyOutput passes the agent's terminal output to the caller's. The first
// write that fails (the caller's terminal hung up: an SSH session dropped, a
// terminal window closed) calls hangup with its error; what is read after
// that is dropped, so the relay itself never stops reading.
type ptyOutput struct {
	w      io.Writer
	hangup func(error)
	gone   bool
}

func (o *ptyOutput) Write(p []byte) (int, error) {
	if !o.gone {
		_, err := o.w.Write(p)
		if err == nil {
			return len(p), nil
		}
		o.gone = true
		o.hangup(err)
	}
	return len(p), nil
}

// ptyInput copies the caller's input into the agent's terminal. When that
// input is not a terminal itself (a file or a pipe, with --tty) and ends,
// the agent reads an end of file, as if ^D had been typed, rather than
// waiting forever for more.
func (sb *Sandbox) ptyInput(in io.Reader) {
	f, _ := in.(*os.File)
	isTerm := f != nil && isTerminal(f)
	w := &lastByte{w: sb.ptm}
	_, err := io.Copy(w, in)
	if isTerm {
		// In raw mode (the caller's terminal is, for the run) a read
		// ends only when the terminal hangs up: noticed here even when
		// the agent, writing nothing, would never find out on the
		// output side.
		if err == nil {
			err = io.EOF
		}
		sb.hangUpPTY(fmt.Errorf("input: %w", err))
		return
	}
	if err != nil {
		return
	}
	// The master reports the agent's side's modes. Only a terminal in
	// canonical mode turns VEOF into an end of file; in raw mode the agent
	// reads bytes and decides for itself.
	t, err := unix.IoctlGetTermios(rawFd(sb.ptm), unix.TCGETS)
	if err != nil || t.Lflag&unix.ICANON == 0 {
		return
	}
	eof := []byte{t.Cc[unix.VEOF]}
	if w.n > 0 && w.last != '\n' {
		eof = append(eof, eof[0]) // the first ends the unfinished line
	}
	_, _ = sb.ptm.Write(eof)
}

// lastByte is a writer that remembers how much went through it and the
// last byte.
type lastByte struct {
	w    io.Writer
	n    int64
	last byte
}

func (l *lastByte) Write(p []byte) (int, error) {
	n, err := l.w.Write(p)
	if n > 0 {
		l.n += int64(n)
		l.last = p[n-1]
	}
	return n, err
}

// isTerminal reports whether f is a terminal, one that has hung up
// included: that one answers EIO where anything else answers ENOTTY, and
// the caller's terminal may hang up before the relay asks.
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(rawFd(f), unix.TCGETS)
	return err == nil || errors.Is(err, unix.EIO)
}
