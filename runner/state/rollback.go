package state

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
)

// RefusedError is a rollback refused before it changed anything: the
// caller reports it as a refusal (nemoclaw's exit code 3).
type RefusedError struct{ Err error }

// Error implements error.
func (e *RefusedError) Error() string { return e.Err.Error() }

// Unwrap returns the reason.
func (e *RefusedError) Unwrap() error { return e.Err }

// RollbackConfig is one `blueprint rollback`.
type RollbackConfig struct {
	// Runs is the store; ID the run to undo, which must be the latest of
	// its sandbox.
	Runs *Runs
	ID   string
	// LaunchPath is where sandbox's launch config lives (the supervisor
	// starts it from there).
	LaunchPath func(sandbox string) string
	// Stop stops sandbox and returns once its supervisor has exited; a
	// sandbox that does not run is not an error.
	Stop func(ctx context.Context, sandbox string) error
	// Start starts sandbox, detached, from its launch config as run runID
	// (whose record its supervisor fills in), and returns once its agent
	// runs.
	Start func(ctx context.Context, sandbox, runID string) error
	// UID, User, Pid and PidStart are the rollback's record's.
	UID      int
	User     string
	Pid      int
	PidStart uint64
	// Logger receives what could not be undone (nil: discarded).
	Logger *slog.Logger
}

// Rollback undoes run cfg.ID: it writes back the lock pin of the run
// before it (if that one was applied from a registry), stops the
// sandbox, restores the launch config kept with that run and starts the
// sandbox again as a new run of kind "rollback", which it returns.
// Everything that can be checked is checked before the first change; a
// failure after it undoes the changes (the lock, the launch config and the
// new run's place as its sandbox's latest), so that the rollback can be
// tried again; the stopped sandbox then stays stopped, and `sandbox start`
// brings it back as it was.
func Rollback(ctx context.Context, cfg RollbackConfig) (*Run, error) {
	runs, id := cfg.Runs, cfg.ID
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r, err := runs.Get(id)
	if err != nil {
		return nil, err
	}
	latest, err := runs.Latest(r.Sandbox)
	if err != nil {
		return nil, err
	}
	if latest != nil && latest.ID != r.ID {
		return nil, &RefusedError{fmt.Errorf("rollback %s: run %s of sandbox %s came after it\n  what to do: roll back the latest run of the sandbox, nemoclaw blueprint rollback %s", id, latest.ID, r.Sandbox, latest.ID)}
	}
	prev, err := runs.Previous(r)
	if err != nil {
		return nil, err
	}
	if prev == nil {
		return nil, &RefusedError{fmt.Errorf("rollback %s: it is the first run of sandbox %s: there is nothing to go back to\n  what to do: stop it (nemoclaw sandbox stop %s) or destroy it", id, r.Sandbox, r.Sandbox)}
	}
	saved, err := os.ReadFile(filepath.Join(runs.Dir, prev.ID, LaunchFile))
	if err != nil {
		return nil, &RefusedError{fmt.Errorf("rollback %s: the run before it, %s, kept no launch config (its agent never ran): %w", id, prev.ID, err)}
	}
	var undo undoList
	fail := func(err error) (*Run, error) {
		if uerr := undo.run(); uerr != nil {
			log.Warn("rollback: undo", "run", id, "err", uerr)
			err = fmt.Errorf("%w\n  and undoing it failed: %w", err, uerr)
		}
		return nil, err
	}
	if prev.Pin != nil {
		if err := restorePin(prev.Pin, &undo); err != nil {
			return fail(fmt.Errorf("rollback %s: write back the pin of run %s: %w", id, prev.ID, err))
		}
	}
	if err := cfg.Stop(ctx, r.Sandbox); err != nil {
		return fail(fmt.Errorf("rollback %s: stop sandbox %s: %w", id, r.Sandbox, err))
	}
	launch := cfg.LaunchPath(r.Sandbox)
	if err := os.MkdirAll(filepath.Dir(launch), 0o700); err != nil {
		return fail(fmt.Errorf("rollback %s: %w", id, err))
	}
	if err := replaceFile(launch, saved, 0o600, &undo); err != nil {
		return fail(fmt.Errorf("rollback %s: restore the launch config of run %s: %w", id, prev.ID, err))
	}
	rec := &Run{
		Kind: "rollback", RollbackOf: r.ID, Sandbox: r.Sandbox, Blueprint: prev.Blueprint, Version: prev.Version,
		Digest: prev.Digest, Signer: prev.Signer, Profile: prev.Profile, Pin: prev.Pin, PolicyGeneration: 1,
		UID: cfg.UID, User: cfg.User, Pid: cfg.Pid, PidStart: cfg.PidStart, Detached: true, Outcome: OutcomeStarting,
	}
	if err := runs.Create(rec); err != nil {
		return fail(err)
	}
	if err := cfg.Start(ctx, r.Sandbox, rec.ID); err != nil {
		reason := "sandbox start: " + err.Error()
		undo.add(func() error { return runs.abort(rec.ID, cfg.Pid, reason) })
		return fail(fmt.Errorf("rollback %s: start sandbox %s as run %s launched it: %w (run %s records it)", id, r.Sandbox, prev.ID, err, rec.ID))
	}
	return rec, nil
}

// restorePin writes p's entry into its lock file, remembering in undo how
// to put the file back.
func restorePin(p *Pin, undo *undoList) error {
	if !filepath.IsAbs(p.LockFile) {
		return fmt.Errorf("lock file %q is not an absolute path", p.LockFile)
	}
	l, err := ReadLock(p.LockFile, nil)
	if err != nil {
		return err
	}
	if cur := l.Find(p.Ref); cur != nil && *cur == p.LockEntry {
		return nil // pinned already
	}
	l.Set(p.LockEntry)
	b, err := l.Encode()
	if err != nil {
		return fmt.Errorf("lock %s: %w", p.LockFile, err)
	}
	return replaceFile(p.LockFile, b, 0o644, undo)
}

// replaceFile writes data over path atomically and adds to undo how to
// bring back what was there (or its absence).
func replaceFile(path string, data []byte, mode os.FileMode, undo *undoList) error {
	old, err := os.ReadFile(path)
	existed := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := writeAtomicMode(path, data, mode); err != nil {
		return err
	}
	undo.add(func() error {
		if !existed {
			return os.Remove(path)
		}
		return writeAtomicMode(path, old, mode)
	})
	return nil
}

// undoList is what a failed rollback undoes, newest first.
type undoList []func() error

func (u *undoList) add(f func() error) { *u = append(*u, f) }

func (u undoList) run() error {
	var errs []error
	for i := len(u) - 1; i >= 0; i-- {
		errs = append(errs, u[i]())
	}
	return errors.Join(errs...)
}

// abort ends run id as failed with reason, if no other process claimed it
// (its supervisor ends it itself), and makes the run before it its
// sandbox's latest again: a run that never started replaces nothing.
func (s *Runs) abort(id string, pid int, reason string) error {
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	r, err := s.Get(id)
	if err != nil {
		return err
	}
	if r.Outcome == OutcomeStarting && r.Pid == pid {
		r.Ended, r.Outcome, r.Reason = s.now().UTC(), OutcomeFailed, reason
		if err := s.write(r); err != nil {
			return err
		}
	}
	if ranAgent(r) || s.Live(r) {
		return nil
	}
	b, err := os.ReadFile(s.latestPath(r.Sandbox))
	if err != nil || string(b) != r.ID+"\n" || r.Prev == "" {
		return err
	}
	return writeAtomic(s.latestPath(r.Sandbox), []byte(r.Prev+"\n"))
}
