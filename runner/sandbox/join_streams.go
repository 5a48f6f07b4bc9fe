package sandbox

import (
	"io"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// execDrain is how long a joined process's output is still copied after
// the process exited, for what its descendants write (a background job
// holding its stdout or terminal): Wait returns then rather than when the
// last of them exits, as docker exec and sshd do.
const execDrain = 250 * time.Millisecond

// execIO is a joined process's standard streams: what the init gets for
// it, and the copies this process makes to and from the caller's.
type execIO struct {
	// child are the process's stdin, stdout and stderr, sent to the init;
	// own are those of them made here, closed once sent.
	child [3]*os.File
	own   []*os.File
	// ptm is the pseudo-terminal's master with a TTY.
	ptm *os.File
	// in is the caller's input, copied into inW (a pipe, or ptm); termIn
	// is set when it is a terminal, read with poll until stopW closes.
	in           io.Reader
	inW          *os.File
	termIn       *os.File
	stopR, stopW int
	outs         []outRelay
	copies       sync.WaitGroup
	null         *os.File
}

// outRelay copies the process's output from r to w.
type outRelay struct {
	r *os.File
	w io.Writer
}

// newExecIO prepares cfg's streams for a joined process.
func newExecIO(cfg *ExecConfig) (*execIO, error) {
	x := &execIO{stopR: -1, stopW: -1}
	ok := false
	defer func() {
		if !ok {
			x.abort()
		}
	}()
	if cfg.TTY {
		ptm, pts, err := openPTY(cfg.WindowSize)
		if err != nil {
			return nil, err
		}
		x.ptm, x.child = ptm, [3]*os.File{pts, pts, pts}
		x.own = append(x.own, pts)
		if err := x.input(cfg.Stdin, ptm); err != nil {
			return nil, err
		}
		var out io.Writer = io.Discard
		if cfg.Stdout != nil {
			out = cfg.Stdout
		}
		x.outs = append(x.outs, outRelay{r: ptm, w: out})
		ok = true
		return x, nil
	}
	switch f, direct := directFile(cfg.Stdin); {
	case direct:
		x.child[0] = f
	case cfg.Stdin == nil:
		null, err := x.devNull()
		if err != nil {
			return nil, err
		}
		x.child[0] = null
	default:
		r, w, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		x.child[0] = r
		x.own = append(x.own, r)
		if err := x.input(cfg.Stdin, w); err != nil {
			return nil, err
		}
	}
	for i, w := range []io.Writer{cfg.Stdout, cfg.Stderr} {
		if f, direct := directFile(w); direct {
			x.child[1+i] = f
			continue
		}
		if w == nil {
			null, err := x.devNull()
			if err != nil {
				return nil, err
			}
			x.child[1+i] = null
			continue
		}
		if i == 1 && len(x.outs) > 0 && sameWriter(cfg.Stdout, cfg.Stderr) {
			// One pipe for both, as one terminal or writer for both:
			// the process's stdout and stderr keep their order.
			x.child[2] = x.child[1]
			continue
		}
		r, pw, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		x.child[1+i] = pw
		x.own = append(x.own, pw)
		x.outs = append(x.outs, outRelay{r: r, w: w})
	}
	ok = true
	return x, nil
}

// directFile returns s as a file when it can be handed to the process as
// it is: a pipe or a character device that is not a terminal (streams.go
// and termRelay say why nothing else is).
func directFile(s any) (*os.File, bool) {
	f, ok := s.(*os.File)
	if !ok || f == nil {
		return nil, false
	}
	return f, !isTerminal(f) && !needsRelay(f)
}

// sameWriter reports whether stdout and stderr are one destination.
func sameWriter(a, b io.Writer) bool {
	fa, oka := a.(*os.File)
	fb, okb := b.(*os.File)
	if oka && okb {
		return fa == fb || sameFile(fa, fb)
	}
	return a == b
}

// devNull returns /dev/null, opened once per process.
func (x *execIO) devNull() (*os.File, error) {
	if x.null == nil {
		f, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
		if err != nil {
			return nil, err
		}
		x.null = f
	}
	return x.null, nil
}

// input sets the copy of in (nil: none) into w.
func (x *execIO) input(in io.Reader, w *os.File) error {
	if in == nil {
		if w != x.ptm {
			w.Close() // an immediate end of file
		}
		return nil
	}
	x.in = in
	if w != x.ptm {
		x.inW = w
	}
	if f, ok := in.(*os.File); ok && f != nil && isTerminal(f) {
		p := make([]int, 2)
		if err := unix.Pipe2(p, unix.O_CLOEXEC); err != nil {
			return err
		}
		x.termIn, x.stopR, x.stopW = f, p[0], p[1]
	}
	return nil
}

// childSent closes this process's copies of the process's streams: the
// init holds its own now (or the request failed).
func (x *execIO) childSent() {
	for _, f := range x.own {
		f.Close()
	}
	x.own = nil
	if x.null != nil {
		x.null.Close()
		x.null = nil
	}
}

// start starts the copies for the running process p.
func (x *execIO) start(p *Process) {
	dst := x.inW
	if x.ptm != nil {
		dst = x.ptm
	}
	switch {
	case x.termIn != nil:
		stopR := x.stopR
		x.stopR = -1
		go func() {
			defer unix.Close(stopR)
			pollCopy(dst, rawFd(x.termIn), stopR)
			if x.inW != nil {
				x.inW.Close()
			}
		}()
	case x.in != nil && x.ptm != nil:
		go func() {
			w := &lastByte{w: x.ptm}
			if _, err := io.Copy(w, x.in); err == nil {
				typeEOF(x.ptm, w)
			}
		}()
	case x.in != nil:
		go func() {
			_, _ = io.Copy(x.inW, x.in) // ends with EPIPE once the process is gone
			x.inW.Close()
		}()
	}
	for _, o := range x.outs {
		w := o.w
		if x.ptm != nil {
			// A caller's terminal that fails hangs the process up, as
			// the agent's (hangUpPTY).
			w = &ptyOutput{w: w, hangup: func(error) { _ = p.Signal(syscall.SIGHUP) }}
		}
		x.copies.Add(1)
		go func() {
			defer x.copies.Done()
			_, _ = io.Copy(w, o.r) // a pseudo-terminal ends with EIO
		}()
	}
}

// finish ends the copies once the process has exited: its input at once,
// its output at its end or after execDrain.
func (x *execIO) finish() {
	if x.stopW >= 0 {
		unix.Close(x.stopW)
		x.stopW = -1
	}
	if x.inW != nil {
		x.inW.Close()
	}
	deadline := time.Now().Add(execDrain)
	for _, o := range x.outs {
		_ = o.r.SetReadDeadline(deadline)
	}
	x.copies.Wait()
	for _, o := range x.outs {
		o.r.Close()
	}
}

// abort releases everything of a process that did not start.
func (x *execIO) abort() {
	x.childSent()
	for _, fd := range []int{x.stopR, x.stopW} {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
	x.stopR, x.stopW = -1, -1
	if x.inW != nil {
		x.inW.Close()
	}
	for _, o := range x.outs {
		o.r.Close()
	}
	if x.ptm != nil {
		x.ptm.Close()
	}
}
