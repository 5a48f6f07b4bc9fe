package supervisor

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// FollowConfig is a log file Follow reads.
type FollowConfig struct {
	// Path is the file (AgentLogFile or AuditFile of a sandbox).
	Path string
	// Running reports whether its writer is alive; nil: read what is
	// there and return.
	Running func() bool
	// Line is called with each line, without its newline.
	Line func(string)
	// Poll is how often a follower looks for more (0: 200 ms).
	Poll time.Duration
}

// Follow calls cfg.Line for each line of cfg.Path and, while cfg.Running
// says the writer is alive, waits for more (a file not made yet
// included). A last line without its newline is held until it is
// complete, or passed on once nothing more can come. It returns when the
// writer is gone or ctx ends.
func Follow(ctx context.Context, cfg FollowConfig) error {
	poll := cfg.Poll
	if poll <= 0 {
		poll = 200 * time.Millisecond
	}
	running := cfg.Running
	if running == nil {
		running = func() bool { return false }
	}
	var (
		f       *os.File
		r       *bufio.Reader
		partial string
	)
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	for {
		if f == nil {
			var err error
			f, err = os.Open(cfg.Path)
			switch {
			case errors.Is(err, os.ErrNotExist):
				f = nil
			case err != nil:
				return fmt.Errorf("logs: %w", err)
			default:
				r = bufio.NewReader(f)
			}
		}
		if r != nil {
			for {
				s, err := r.ReadString('\n')
				partial += s
				if err != nil {
					break
				}
				cfg.Line(strings.TrimSuffix(partial, "\n"))
				partial = ""
			}
		}
		// Asked before the last read's result is trusted: a writer that
		// ended after the read may have written more just before.
		if !running() {
			if r != nil {
				rest, _ := io.ReadAll(r)
				partial += string(rest)
				for _, l := range strings.SplitAfter(partial, "\n") {
					if l != "" {
						cfg.Line(strings.TrimSuffix(l, "\n"))
					}
				}
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(poll):
		}
	}
}
