package state

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"
)

// LaunchFile is the name under which a run keeps a copy of its sandbox's
// launch config (runner/supervisor's LaunchFile): what a rollback to the
// run starts again.
const LaunchFile = "launch.json"

// InUseError is a run that could not take its sandbox's name because
// another, live run holds it.
type InUseError struct {
	Sandbox string
	// Live is the run that holds the sandbox.
	Live *Run
	// Err is the failure it caused, if any.
	Err error
}

// Error names the run holding the sandbox and what to do.
func (e *InUseError) Error() string {
	msg := fmt.Sprintf("apply: sandbox %q is in use by run %s (%s@%s, pid %d, since %s)\n  what to do: choose another --name, or stop it first (nemoclaw sandbox stop %s)",
		e.Sandbox, e.Live.ID, e.Live.Blueprint, e.Live.Version, e.Live.Pid, e.Live.Started.Format(time.RFC3339), e.Sandbox)
	if e.Err != nil {
		return e.Err.Error() + "\n  " + msg
	}
	return msg
}

// Unwrap returns the failure.
func (e *InUseError) Unwrap() error { return e.Err }

// CheckFree returns an *InUseError if a live run other than except holds
// sandbox name.
func (s *Runs) CheckFree(name, except string) error {
	live, err := s.LiveRunOf(name, except)
	if err != nil {
		return err
	}
	if live != nil {
		return &InUseError{Sandbox: name, Live: live}
	}
	return nil
}

// TrackConfig is a run whose sandbox Track runs.
type TrackConfig struct {
	// Runs is the store and ID the run's record, made by Create (by this
	// process, or by a rollback's launcher for the process it started).
	Runs *Runs
	ID   string
	// Sandbox is the run's sandbox.
	Sandbox string
	// Pid and PidStart name this process, the sandbox's supervisor;
	// Detached says it outlives its launcher.
	Pid      int
	PidStart uint64
	Detached bool
	// LaunchPath is the sandbox's launch config, kept with the run once
	// the agent runs.
	LaunchPath string
	// Outcome turns what run returned into the agent's exit code, or the
	// reason the run failed ("" for an agent that ran to its end).
	Outcome func(error) (code int, reason string)
	// Logger receives what could not be recorded (nil: discarded).
	Logger *slog.Logger
}

// Track runs a sandbox as run cfg.ID: it claims the record for this
// process, marks it running when run calls onRunning (keeping a copy of
// the launch config), and ends it with the agent's exit code or the reason
// run failed. A run that failed because another live run holds the
// sandbox returns an *InUseError naming it. Track returns run's error.
func Track(ctx context.Context, cfg TrackConfig, run func(ctx context.Context, onRunning func()) error) error {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	runs, id := cfg.Runs, cfg.ID
	if r, err := runs.Get(id); err != nil {
		return err
	} else if r.Pid != cfg.Pid { // made by another process (a rollback's launcher)
		if err := runs.Update(id, func(r *Run) { r.Pid, r.PidStart, r.Detached = cfg.Pid, cfg.PidStart, cfg.Detached }); err != nil {
			return err
		}
	}
	onRunning := func() {
		if err := CopyFile(cfg.LaunchPath, filepath.Join(runs.Dir, id, LaunchFile)); err != nil {
			log.Warn("run record: keep the launch config", "run", id, "err", err)
		}
		if err := runs.Update(id, func(r *Run) { r.Outcome = OutcomeRunning }); err != nil {
			log.Warn("run record", "run", id, "err", err)
		}
	}
	err := run(ctx, onRunning)
	code, reason := cfg.Outcome(err)
	if reason != "" {
		if live, lerr := runs.LiveRunOf(cfg.Sandbox, id); lerr == nil && live != nil {
			err = &InUseError{Sandbox: cfg.Sandbox, Live: live, Err: err}
			reason = err.Error()
		}
	}
	if eerr := runs.End(id, code, reason); eerr != nil {
		log.Warn("run record", "run", id, "err", eerr)
	}
	return err
}
