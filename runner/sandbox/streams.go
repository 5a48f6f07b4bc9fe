package sandbox

import (
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// streamRelay stands between the agent and those of the caller's streams
// the agent must not hold. A descriptor handed to the agent is the
// caller's open file itself: through a regular file opened for `>> log`
// the agent could ftruncate, fallocate or pwrite the caller's log (and,
// rootless, fchmod it: the agent is its owner); through a socket, send
// descriptors or shut it down. Such a stream reaches the agent as a pipe
// instead, which this process copies to or from the file. Pipes and
// character devices (/dev/null; a terminal is the TTY code's business)
// are handed over as they are: nothing of them outlives the run.
type streamRelay struct {
	// agentEnds are the pipe ends the agent gets; closed once it has
	// them, by Start or by waitLoop, whichever comes first (mu).
	mu        sync.Mutex
	agentEnds []*os.File
	out       sync.WaitGroup
}

// relayStreams replaces cfg's streams that need it with pipes, and starts
// copying. Call started once the init holds the agent's ends, and wait
// after the agent has exited.
func relayStreams(cfg *Config) (*streamRelay, error) {
	sr := &streamRelay{}
	var err error
	if f, ok := cfg.Stdin.(*os.File); ok && needsRelay(f) {
		var r *os.File
		if r, err = sr.pipe(f, false); err != nil {
			sr.close()
			return nil, err
		}
		cfg.Stdin = r
	}
	for _, w := range []*io.Writer{&cfg.Stdout, &cfg.Stderr} {
		if f, ok := (*w).(*os.File); ok && needsRelay(f) {
			var pw *os.File
			if pw, err = sr.pipe(f, true); err != nil {
				sr.close()
				return nil, err
			}
			*w = pw
		}
	}
	return sr, nil
}

// pipe makes the relay for f: for an output (out) the agent gets the write
// end and this process copies the read end into f; for the input, the
// reverse. It returns the agent's end.
func (sr *streamRelay) pipe(f *os.File, out bool) (*os.File, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	if out {
		sr.agentEnds = append(sr.agentEnds, w)
		sr.out.Add(1)
		go func() {
			defer sr.out.Done()
			_, _ = io.Copy(f, r)
			r.Close()
		}()
		return w, nil
	}
	sr.agentEnds = append(sr.agentEnds, r)
	go func() {
		_, _ = io.Copy(w, f) // ends with EPIPE once the agent is gone
		w.Close()
	}()
	return r, nil
}

// needsRelay reports whether f is anything but a pipe or a character
// device (what fstat cannot tell is relayed too).
func needsRelay(f *os.File) bool {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return true
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFIFO, unix.S_IFCHR:
		return false
	}
	return true
}

// started closes this process's copies of the agent's ends: once the
// agent's side is gone, the outputs' copies end.
func (sr *streamRelay) started() {
	if sr == nil {
		return
	}
	sr.mu.Lock()
	defer sr.mu.Unlock()
	for _, f := range sr.agentEnds {
		f.Close()
	}
	sr.agentEnds = nil
}

// wait waits until everything the agent wrote is in the caller's files.
func (sr *streamRelay) wait() {
	if sr != nil {
		sr.started()
		sr.out.Wait()
	}
}

// close ends a relay whose sandbox did not start.
func (sr *streamRelay) close() { sr.wait() }
