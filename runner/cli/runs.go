package cli

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/nemoclaw/nemoclaw/runner/state"
)

func init() {
	registerBlueprint(newBlueprintStatusCmd)
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
			if len(args) == 1 {
				r, err := runs.Get(args[0])
				if err != nil {
					return err
				}
				v := runView{Run: r, Status: runs.Describe(r)}
				if output == "json" {
					return writeJSON(app.Out, v)
				}
				printRun(app, v)
				return nil
			}
			list, err := runs.List()
			if err != nil {
				return err
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
			fmt.Fprintln(tw, "RUN\tSANDBOX\tBLUEPRINT\tDIGEST\tSTATUS\tSTARTED")
			for _, v := range views {
				fmt.Fprintf(tw, "%s\t%s\t%s@%s\t%s\t%s\t%s\n", v.ID, v.Sandbox, v.Blueprint, dash(v.Version),
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
