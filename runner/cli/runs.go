package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
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
	if v.Pin != nil {
		row("pinned in", v.Pin.LockFile)
	}
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

// runTracked runs the sandbox of ro as run id of runs (state.Track):
// the record is claimed by this process, the supervisor's, marked running
// once the agent runs and ended with the agent's exit code or the reason
// the run failed.
func runTracked(ctx context.Context, app *App, runs *state.Runs, id string, ro *sandboxRunOpts, command []string) error {
	pid := os.Getpid()
	pidStart, _ := supervisor.ProcessStart(pid)
	err := state.Track(ctx, state.TrackConfig{
		Runs: runs, ID: id, Sandbox: ro.name, Pid: pid, PidStart: pidStart, Detached: ro.superviseFd != 0,
		LaunchPath: filepath.Join(supervisor.Dir(app.Home, ro.name), supervisor.LaunchFile),
		Outcome: func(err error) (int, string) {
			if err != nil && !silent(err) {
				return ExitCode(err), err.Error()
			}
			return ExitCode(err), ""
		},
		Logger: app.Logger,
	}, func(ctx context.Context, onRunning func()) error {
		ro.onRunning = onRunning
		return runSandbox(ctx, app, ro, command)
	})
	var iu *state.InUseError
	if errors.As(err, &iu) {
		return Refused(err)
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
rollback as a run of its own. A run applied from a registry has its pin
(reference, version, digest, signer) written back into the nemoclaw.lock
it was applied with. The workspace is the sandbox's and is not rolled
back, and the blueprint is not fetched again: the restored launch config
is what that blueprint produced. A rollback that fails after its first
change undoes the lock and launch config and may be tried again; the
sandbox then stays stopped, and nemoclaw sandbox start brings it back.`,
		Example: `  nemoclaw blueprint rollback 20261207T014800Z-1a2b`,
		Args:    argsRange(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return rollback(cmd.Context(), app, args[0], stopTimeout)
		},
	}
	addStopTimeoutFlag(cmd.Flags(), &stopTimeout)
	return cmd
}

// rollback is `blueprint rollback id` (state.Rollback): the sandbox is
// stopped with supervisor.StopSandbox and started again, detached, as
// `sandbox start --run` would.
func rollback(ctx context.Context, app *App, id string, stopTimeout time.Duration) error {
	pid := os.Getpid()
	pidStart, _ := supervisor.ProcessStart(pid)
	rec, err := state.Rollback(ctx, state.RollbackConfig{
		Runs: runStore(app), ID: id,
		LaunchPath: func(name string) string { return filepath.Join(supervisor.Dir(app.Home, name), supervisor.LaunchFile) },
		Stop: func(ctx context.Context, name string) error {
			return supervisor.EnsureStopped(ctx, app.Home, name, stopTimeout)
		},
		Start: func(ctx context.Context, name, runID string) error {
			return startSandbox(ctx, app, name, runID, 0, true)
		},
		UID: os.Getuid(), User: userName(), Pid: pid, PidStart: pidStart, Logger: app.Logger,
	})
	var re *state.RefusedError
	switch {
	case errors.As(err, &re):
		return Refused(err)
	case err != nil:
		return WithExitCode(ExitCode(err), err)
	}
	printf(app.Out, "%s\n", rec.ID)
	app.Logger.Info("rolled back", "run", id, "sandbox", rec.Sandbox, "as", rec.ID)
	return nil
}
