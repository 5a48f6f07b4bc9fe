package sandbox

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
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
	typeEOF(sb.ptm, w)
}

// typeEOF types an end of file into the pseudo-terminal master ptm, after
// the input w copied into it.
func typeEOF(ptm *os.File, w *lastByte) {
	// The master reports the agent's side's modes. Only a terminal in
	// canonical mode turns VEOF into an end of file; in raw mode the agent
	// reads bytes and decides for itself.
	t, err := unix.IoctlGetTermios(rawFd(ptm), unix.TCGETS)
	if err != nil || t.Lflag&unix.ICANON == 0 {
		return
	}
	eof := []byte{t.Cc[unix.VEOF]}
	if w.n > 0 && w.last != '\n' {
		eof = append(eof, eof[0]) // the first ends the unfinished line
	}
	_, _ = ptm.Write(eof)
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

// termRelay stands between the agent and the caller's terminal when the
// agent has no pseudo-terminal of its own (Config.TTY off): every standard
// stream that is a terminal becomes a pipe, which the launcher copies from
// or to that terminal. The agent never holds a descriptor of the caller's
// terminal, so it cannot take it exclusively (TIOCEXCL), change its line
// discipline, modes or size (all of which outlast the run), or make it its
// controlling terminal and push input into it (TIOCSCTTY + TIOCSTI). Pipes
// rather than a pseudo-terminal, as docker and ssh do without -t: the agent
// asked for no terminal and gets none, output goes out byte for byte (no
// CRLF, no echo of piped input), and a caller that wants one passes --tty.
type termRelay struct {
	// agent is what the init gets in place of each stream (nil: the
	// stream as given); closed here once the init has its copies.
	agent [3]*os.File
	// in is the caller's terminal on stdin, copied into inW.
	in, inW *os.File
	// stopR and stopW wake the input relay when the agent is gone, so
	// that it stops reading the caller's terminal (what is typed then is
	// the shell's, not the sandbox's). -1: none.
	stopR, stopW int
	stopOnce     sync.Once
	outs         []outCopy
	started      bool
}

// outCopy copies the agent's output from r to the caller's terminal.
type outCopy struct{ r, term *os.File }

// relayTerminals returns cfg with each standard stream that is a terminal
// replaced by a pipe, and keeps the relay in sb (none when no stream is a
// terminal).
func (sb *Sandbox) relayTerminals(cfg Config) (Config, error) {
	in, _ := cfg.Stdin.(*os.File)
	out, _ := cfg.Stdout.(*os.File)
	errf, _ := cfg.Stderr.(*os.File)
	tin, tout, terr := in != nil && isTerminal(in), out != nil && isTerminal(out), errf != nil && isTerminal(errf)
	if !tin && !tout && !terr {
		return cfg, nil
	}
	r := &termRelay{stopR: -1, stopW: -1}
	sb.relay = r
	if tin {
		pr, pw, err := os.Pipe()
		if err != nil {
			return cfg, err
		}
		p := make([]int, 2)
		if err := unix.Pipe2(p, unix.O_CLOEXEC); err != nil {
			pr.Close()
			pw.Close()
			return cfg, err
		}
		r.agent[0], r.in, r.inW, r.stopR, r.stopW = pr, in, pw, p[0], p[1]
		cfg.Stdin = pr
	}
	outPipe := func(term *os.File) (*os.File, error) {
		pr, pw, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		r.outs = append(r.outs, outCopy{r: pr, term: term})
		return pw, nil
	}
	if tout {
		pw, err := outPipe(out)
		if err != nil {
			return cfg, err
		}
		r.agent[1], cfg.Stdout = pw, pw
	}
	if terr {
		if tout && sameFile(out, errf) {
			// One pipe for both, as one terminal for both: the
			// agent's stdout and stderr keep their order.
			r.agent[2], cfg.Stderr = r.agent[1], r.agent[1]
		} else {
			pw, err := outPipe(errf)
			if err != nil {
				return cfg, err
			}
			r.agent[2], cfg.Stderr = pw, pw
		}
	}
	return cfg, nil
}

// sameFile reports whether a and b are the same file (a terminal open
// twice is one).
func sameFile(a, b *os.File) bool {
	var sa, sb unix.Stat_t
	return unix.Fstat(rawFd(a), &sa) == nil && unix.Fstat(rawFd(b), &sb) == nil && sa.Dev == sb.Dev && sa.Ino == sb.Ino && sa.Rdev == sb.Rdev
}

// start closes the agent's ends (the init has its own copies now) and
// starts the copies; the channel closes when the output is all out.
func (r *termRelay) start() chan struct{} {
	r.started = true
	r.closeAgentEnds()
	if r.in != nil {
		go r.input()
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	for _, o := range r.outs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer o.r.Close()
			// Until every writer in the sandbox is gone (the end of
			// file), or the terminal fails (hung up): closing the pipe
			// then fails the agent's next write, as the terminal would.
			_, _ = io.Copy(o.term, o.r)
		}()
	}
	go func() {
		wg.Wait()
		close(done)
	}()
	return done
}

func (r *termRelay) closeAgentEnds() {
	for i, f := range r.agent {
		if f != nil && (i == 0 || f != r.agent[i-1]) {
			f.Close()
		}
		r.agent[i] = nil
	}
}

// input copies what is typed on the caller's terminal into the agent's
// stdin until the terminal's end of file (^D, a hangup), the agent's
// input closing, or stopInput. It reads only what poll says is there, so
// that once stopped it leaves the terminal's input to whoever reads next.
func (r *termRelay) input() {
	defer r.inW.Close()
	defer unix.Close(r.stopR)
	pollCopy(r.inW, rawFd(r.in), r.stopR)
}

// pollCopy copies what is typed on the terminal tfd into w until the
// terminal's end of file (^D, a hangup), a failed write, or stopR turning
// readable or hung up. It reads only what poll says is there, so that
// once stopped it leaves the terminal's input to whoever reads next.
func pollCopy(w io.Writer, tfd, stopR int) {
	buf := make([]byte, 32<<10)
	for {
		fds := []unix.PollFd{{Fd: int32(tfd), Events: unix.POLLIN}, {Fd: int32(stopR), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, -1); err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return
		}
		if fds[1].Revents != 0 || fds[0].Revents&unix.POLLNVAL != 0 {
			return
		}
		if fds[0].Revents == 0 {
			continue
		}
		n, err := unix.Read(tfd, buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return // the agent closed its input
			}
			continue
		}
		if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
			continue
		}
		return // end of file (^D), or the terminal hung up
	}
}

// stopInput stops the input relay (the agent has exited).
func (r *termRelay) stopInput() {
	r.stopOnce.Do(func() {
		if r.stopW >= 0 {
			unix.Close(r.stopW) // the relay's poll sees the hangup
		}
	})
}

// close releases what a relay that never started holds, and stops a
// started one's input.
func (r *termRelay) close() {
	r.stopInput()
	if r.started {
		return
	}
	r.closeAgentEnds()
	for _, f := range []*os.File{r.inW} {
		if f != nil {
			f.Close()
		}
	}
	if r.stopR >= 0 {
		unix.Close(r.stopR)
	}
	for _, o := range r.outs {
		o.r.Close()
	}
}
