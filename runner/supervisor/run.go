package supervisor

import (
	"context"
	"os"

	"github.com/nemoclaw/nemoclaw/runner/sandbox"
)

// RunConfig is one run of a sandbox from start to its agent's exit, in
// the foreground or as a detached supervisor.
type RunConfig struct {
	Config
	// Signals are the launcher's caught signals (sandbox.CatchSignals),
	// passed on to the agent once it runs; Terminal is the launcher's
	// terminal whose size the agent's follows (nil: none). Run stops
	// Signals once the agent has exited.
	Signals  *sandbox.SignalForwarder
	Terminal *os.File
	// Notifier, for a detached supervisor, tells the launcher that the
	// agent runs (or, through the caller's Failed, why not).
	Notifier *Notifier
	// OnRunning, if set, is called once the agent runs and the sandbox's
	// record is written, before the launcher is told (a run record).
	OnRunning func()
	// Prepare, if set, is called after the supervisor is made and before
	// the sandbox starts (a banner, the terminal's raw mode); its undo
	// runs when the run ends.
	Prepare func(s *Supervisor) (undo func(), err error)
	// Exits marks a process that exits once Run returns: the supervisor
	// Finishes rather than Closes, and a hang-up after the agent's exit
	// is ignored.
	Exits bool
}

// StartError is a sandbox that did not start (sandbox.Start's error).
type StartError struct{ Err error }

// Error implements error.
func (e *StartError) Error() string { return e.Err.Error() }

// Unwrap returns sandbox.Start's error.
func (e *StartError) Unwrap() error { return e.Err }

// Run makes the supervisor of rc, starts its sandbox, passes signals on,
// reports the agent running, waits for its exit and cleans up; it returns
// the agent's exit code. New's errors come back as they are (a
// *RefusedError among them), a failed start as a *StartError.
func Run(ctx context.Context, rc RunConfig) (code int, rerr error) {
	sup, err := New(rc.Config)
	if err != nil {
		return 0, err
	}
	end := sup.Close
	if rc.Exits {
		end = sup.Finish
	}
	defer func() {
		if err := end(); err != nil {
			sup.log.Warn("sandbox cleanup", "err", err)
		}
	}()
	if rc.Notifier != nil {
		rc.Notifier.LogTo(sup.Dir())
	}
	if rc.Prepare != nil {
		undo, err := rc.Prepare(sup)
		if err != nil {
			return 0, err
		}
		if undo != nil {
			defer undo()
		}
	}
	if err := sup.Start(context.WithoutCancel(ctx)); err != nil {
		return 0, &StartError{err}
	}
	if rc.Signals != nil {
		if err := rc.Signals.Forward(sup.Sandbox(), rc.Terminal); err != nil {
			return 0, err
		}
	}
	if rc.Notifier != nil || rc.OnRunning != nil {
		<-sup.Ready() // the state record and launch config are written
	}
	if rc.OnRunning != nil {
		rc.OnRunning()
	}
	if rc.Notifier != nil {
		rc.Notifier.Running(rc.Name)
	}
	code, err = sup.Wait()
	// Before the supervisor's end: the forwarder uses the sandbox's terminal.
	if rc.Signals != nil {
		if rc.Exits {
			rc.Signals.StopIgnoringHangup()
		} else {
			rc.Signals.Stop()
		}
	}
	return code, err
}
