package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/nemoclaw/nemoclaw/runner/state"
	"github.com/nemoclaw/nemoclaw/runner/supervisor"
)

func init() {
	registerBlueprint(newBlueprintStatusCmd)
	registerBlueprint(newBlueprintRollbackCmd)
}

// runView is a run as `blueprint status -o json` shows it: the record,
// and its outcome in words (a dead process's record says "died").
type runView struct {
	*state.Run
	Status string `json:"status"`
}

func newBlueprintStatusCmd(app *App) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "status [RUN]",
		Short: "List the runs of blueprint apply, newest first, or show one run in full",
		Long: `Status reads the run records under $NEMOCLAW_HOME/state/runs: one per
blueprint apply, with what was applied (blueprint, version, digest, signer,
profile, sandbox), when, by whom, and its outcome: starting, running,
exited N, failed: reason, or died (its process is gone without recording
an end: killed, or the host rebooted; nemoclaw sandbox destroy NAME
cleans up, nemoclaw sandbox start NAME brings it back when it got as far
as running). A run replaced by a later apply of its sandbox is marked
superseded.`,
		Example: `  nemoclaw blueprint status
  nemoclaw blueprint status 20261207T014800Z-1a2b -o json`,
		Args: argsRange(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output, "text", "json"); err != nil {
				return err
			}
			runs := runStore(app)
			list, err := runs.List()
			if err != nil {
				return err
			}
			if len(args) == 1 {
				r, err := runs.Get(args[0])
				if err != nil {
					return err
				}
				for _, x := range list {
					if x.ID == r.ID {
						r = x // with SupersededBy
					}
				}
				v := runView{Run: r, Status: runs.Describe(r)}
				if output == "json" {
					return writeJSON(app.Out, v)
				}
				printRun(app, v)
				return nil
			}
			views := make([]runView, 0, len(list))
			for _, r := range list {
				views = append(views, runView{Run: r, Status: runs.Describe(r)})
			}
			if output == "json" {
				return writeJSON(app.Out, views)
			}
			if len(views) == 0 {
				printf(app.Out, "no runs recorded under %s\n", runs.Dir)
				return nil
			}
			tw := tabwriter.NewWriter(app.Out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "RUN\tKIND\tSANDBOX\tBLUEPRINT\tDIGEST\tSTATUS\tSTARTED")
			for _, v := range views {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s@%s\t%s\t%s\t%s\n", v.ID, v.Kind, v.Sandbox, v.Blueprint, dash(v.Version),
					dash(state.ShortDigest(v.Digest)), v.Status, v.Started.Local().Format(time.DateTime))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

// printRun shows one run in full.
func printRun(app *App, v runView) {
	tw := tabwriter.NewWriter(app.Out, 0, 4, 2, ' ', 0)
	row := func(k, val string) { fmt.Fprintf(tw, "%s:\t%s\n", k, val) }
	row("run", v.ID)
	row("kind", v.Kind)
	if v.RollbackOf != "" {
		row("rollback of", v.RollbackOf)
	}
	row("status", v.Status)
	row("sandbox", v.Sandbox)
	row("blueprint", v.Blueprint)
	row("version", dash(v.Version))
	row("digest", dash(v.Digest))
	row("signer", dash(v.Signer))
	row("profile", dash(v.Profile))
	row("policy generation", fmt.Sprint(v.PolicyGeneration))
	row("started", v.Started.Local().Format(time.RFC3339))
	if !v.Ended.IsZero() {
		row("ended", v.Ended.Local().Format(time.RFC3339))
	}
	row("by", fmt.Sprintf("%s (uid %d)", dash(v.User), v.UID))
	row("pid", fmt.Sprint(v.Pid))
	if v.Detached {
		row("detached", "yes")
	}
	_ = tw.Flush()
}

// runTracked runs the sandbox of ro as run id of runs: the record is
// claimed by this process (its pid: the supervisor's), marked running
// once the agent runs (with a copy of the sandbox's launch config, what
// a rollback to this run starts again), and ended with the agent's exit
// code or the reason the run failed.
func runTracked(ctx context.Context, app *App, runs *state.Runs, id string, ro *sandboxRunOpts, command []string) error {
	pid := os.Getpid()
	if r, err := runs.Get(id); err != nil {
		return err
	} else if r.Pid != pid { // made by another process (a rollback's launcher)
		pidStart, _ := supervisor.ProcessStart(pid)
		if err := runs.Update(id, func(r *state.Run) { r.Pid, r.PidStart, r.Detached = pid, pidStart, ro.superviseFd != 0 }); err != nil {
			return err
		}
	}
	ro.onRunning = func() {
		saved := filepath.Join(runs.Dir, id, supervisor.LaunchFile)
		if err := state.CopyFile(filepath.Join(supervisor.Dir(app.Home, ro.name), supervisor.LaunchFile), saved); err != nil {
			app.Logger.Warn("run record: keep the launch config", "run", id, "err", err)
		}
		if err := runs.Update(id, func(r *state.Run) { r.Outcome = state.OutcomeRunning }); err != nil {
			app.Logger.Warn("run record", "run", id, "err", err)
		}
	}
	err := runSandbox(ctx, app, ro, command)
	reason := ""
	if err != nil && !silent(err) {
		if live, lerr := runs.LiveRunOf(ro.name, id); lerr == nil && live != nil {
			err = Refused(fmt.Errorf("%w\n  %w", err, inUseError(ro.name, live)))
		}
		reason = err.Error()
	}
	if eerr := runs.End(id, ExitCode(err), reason); eerr != nil {
		app.Logger.Warn("run record", "run", id, "err", eerr)
	}
	return err
}

// runFlag is `sandbox start`'s hidden flag naming the run record it fills
// in (a rollback's).
const runFlag = "run"

func newBlueprintRollbackCmd(app *App) *cobra.Command {
	var stopTimeout time.Duration
	cmd := &cobra.Command{
		Use:   "rollback RUN",
		Short: "Stop the sandbox a run created and start it again as the run before it launched it",
		Long: `Rollback undoes RUN, which must be the latest run of its sandbox: it stops
that sandbox, then starts it again, detached, from the launch config kept
with the run before RUN of the same sandbox (its policy, command,
environment and workspace, as that run started them), and records the
rollback as a run of its own. The workspace is the sandbox's and is not
rolled back. The blueprint is not fetched again and nemoclaw.lock is not
changed: the restored launch config is what that blueprint produced.`,
		Example: `  nemoclaw blueprint rollback 20261207T014800Z-1a2b`,
		Args:    argsRange(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return rollback(cmd.Context(), app, args[0], stopTimeout)
		},
	}
	addStopTimeoutFlag(cmd.Flags(), &stopTimeout)
	return cmd
}

// rollback is `blueprint rollback id`.
func rollback(ctx context.Context, app *App, id string, stopTimeout time.Duration) error {
	runs := runStore(app)
	r, err := runs.Get(id)
	if err != nil {
		return err
	}
	latest, err := runs.Latest(r.Sandbox)
	if err != nil {
		return err
	}
	if latest != nil && latest.ID != r.ID {
		return Refused(fmt.Errorf("rollback %s: run %s of sandbox %s came after it\n  what to do: roll back the latest run of the sandbox, nemoclaw blueprint rollback %s", id, latest.ID, r.Sandbox, latest.ID))
	}
	prev, err := runs.Previous(r)
	if err != nil {
		return err
	}
	if prev == nil {
		return Refused(fmt.Errorf("rollback %s: it is the first run of sandbox %s: there is nothing to go back to\n  what to do: stop it (nemoclaw sandbox stop %s) or destroy it", id, r.Sandbox, r.Sandbox))
	}
	saved := filepath.Join(runs.Dir, prev.ID, supervisor.LaunchFile)
	if _, err := os.Stat(saved); err != nil {
		return Refused(fmt.Errorf("rollback %s: the run before it, %s, kept no launch config (its agent never ran): %w", id, prev.ID, err))
	}
	in, err := supervisor.StopSandbox(ctx, app.Home, r.Sandbox, stopTimeout)
	if err == nil && in.State == supervisor.StateRunning {
		err = fmt.Errorf("sandbox %s still runs", r.Sandbox)
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, supervisor.ErrNoSandbox) {
		return fmt.Errorf("rollback %s: stop sandbox %s: %w", id, r.Sandbox, err)
	}
	dir := supervisor.Dir(app.Home, r.Sandbox)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("rollback %s: %w", id, err)
	}
	if err := state.CopyFile(saved, filepath.Join(dir, supervisor.LaunchFile)); err != nil {
		return fmt.Errorf("rollback %s: restore the launch config of run %s: %w", id, prev.ID, err)
	}
	rec := &state.Run{
		Kind: "rollback", RollbackOf: r.ID, Sandbox: r.Sandbox, Blueprint: prev.Blueprint, Version: prev.Version,
		Digest: prev.Digest, Signer: prev.Signer, Profile: prev.Profile, PolicyGeneration: 1,
		UID: os.Getuid(), User: userName(), Pid: os.Getpid(), Detached: true, Outcome: state.OutcomeStarting,
	}
	rec.PidStart, _ = supervisor.ProcessStart(rec.Pid)
	if err := runs.Create(rec); err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("rollback %s: find nemoclaw's executable: %w", id, err)
	}
	// `sandbox start` detaches its supervisor, which fills in rec.
	c := exec.CommandContext(ctx, exe, "sandbox", "start", r.Sandbox, "--"+runFlag, rec.ID)
	c.Env = append(os.Environ(), "NEMOCLAW_HOME="+app.Home)
	c.Stdout, c.Stderr = io.Discard, app.Err
	if err := c.Run(); err != nil {
		if cur, gerr := runs.Get(rec.ID); gerr == nil && cur.Outcome == state.OutcomeStarting && cur.Pid == rec.Pid {
			_ = runs.End(rec.ID, ExitError, "sandbox start: "+err.Error())
		}
		return WithExitCode(ExitError, fmt.Errorf("rollback %s: start sandbox %s as run %s launched it: %w (run %s records it)", id, r.Sandbox, prev.ID, err, rec.ID))
	}
	printf(app.Out, "%s\n", rec.ID)
	app.Logger.Info("rolled back", "run", id, "sandbox", r.Sandbox, "to", prev.ID, "as", rec.ID)
	return nil
}
