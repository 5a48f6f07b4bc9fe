package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/nemoclaw/nemoclaw/runner/blueprint"
	"github.com/nemoclaw/nemoclaw/runner/egress"
	"github.com/nemoclaw/nemoclaw/runner/sandbox"
	"github.com/nemoclaw/nemoclaw/runner/supervisor"
)

// sandboxCtors are the `nemoclaw sandbox` subcommands besides run.
var sandboxCtors = []func(app *App) *cobra.Command{
	newSandboxListCmd, newSandboxStatusCmd, newSandboxLogsCmd, newSandboxStartCmd, newSandboxStopCmd, newSandboxDestroyCmd,
	newSandboxExecCmd, newSandboxConnectCmd,
}

// statusTimeout bounds the question to each running supervisor.
const statusTimeout = 2 * time.Second

// completeSandboxNames completes the first argument with the names of the
// sandboxes under $NEMOCLAW_HOME.
func completeSandboxNames(app *App) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveDefault // FILE, PRESET, ID: not a name
		}
		var out []cobra.Completion
		for _, n := range supervisor.Names(app.Home) {
			if strings.HasPrefix(n, toComplete) {
				out = append(out, n)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// completeSandboxThenPreset completes a sandbox name, then a preset of
// the embedded default blueprint (or a file).
func completeSandboxThenPreset(app *App) cobra.CompletionFunc {
	names := completeSandboxNames(app)
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) != 1 {
			return names(cmd, args, toComplete)
		}
		b, err := blueprint.Default()
		if err != nil {
			return nil, cobra.ShellCompDirectiveDefault
		}
		var out []cobra.Completion
		for n := range b.Available {
			if strings.HasPrefix(n, toComplete) {
				out = append(out, n)
			}
		}
		slices.Sort(out)
		return out, cobra.ShellCompDirectiveDefault // a preset file completes too
	}
}

// checkSandboxName refuses what is not a sandbox name as a usage error.
func checkSandboxName(name string) error {
	if !sandbox.ValidName(name) || strings.Contains(name, "..") {
		return Usage(fmt.Errorf("sandbox name %q: want lowercase letters, digits, '.', '_' or '-'", name))
	}
	return nil
}

func newSandboxListCmd(app *App) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls", "ps"},
		Short:   "List the sandboxes under $NEMOCLAW_HOME: running, stopped, or whose supervisor died",
		Long: `List shows every sandbox directory under $NEMOCLAW_HOME/sandboxes: its state,
blueprint and version, uptime, network policy generation and the requests
waiting for approval. A sandbox whose supervisor was killed (or whose host
rebooted) shows as "supervisor died after TIME", or "supervisor died at
TIME while starting (pid N)" when its agent never ran, TIME being its last
sign of life; its processes died with the supervisor. ` + "`nemoclaw sandbox destroy NAME`" + `
removes what it left, ` + "`nemoclaw sandbox start NAME`" + ` brings it back.`,
		Example: `  nemoclaw sandbox list
  nemoclaw sandbox list -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output, "text", "json"); err != nil {
				return err
			}
			infos, err := supervisor.List(cmd.Context(), app.Home, statusTimeout)
			if err != nil {
				return err
			}
			if output == "json" {
				if infos == nil {
					infos = []supervisor.Info{}
				}
				return writeJSON(app.Out, infos)
			}
			if len(infos) == 0 {
				printf(app.Out, "no sandboxes under %s\n", filepath.Join(app.Home, "sandboxes"))
				return nil
			}
			now := time.Now()
			tw := tabwriter.NewWriter(app.Out, 0, 4, 2, ' ', 0)
			printf(tw, "NAME\tSTATE\tBLUEPRINT\tUPTIME\tPOLICY\tPENDING\n")
			for _, in := range infos {
				printf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", in.Name, in.Summary(), blueprintLabel(in), dash(in.Uptime(now)), genLabel(in), pendingLabel(in))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func blueprintLabel(in supervisor.Info) string {
	if in.Blueprint == "" {
		return "-"
	}
	if in.Version != "" {
		return egress.Printable(in.Blueprint) + "@" + egress.Printable(in.Version)
	}
	return egress.Printable(in.Blueprint)
}

func genLabel(in supervisor.Info) string {
	if in.State != supervisor.StateRunning || in.Generation == 0 {
		return "-"
	}
	return strconv.FormatUint(in.Generation, 10)
}

func pendingLabel(in supervisor.Info) string {
	if in.State != supervisor.StateRunning {
		return "-"
	}
	return strconv.Itoa(in.Pending)
}

func newSandboxStatusCmd(app *App) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:               "status NAME",
		Short:             "Show one sandbox's state, processes, blueprint and policy generation",
		Example:           "  nemoclaw sandbox status my-sandbox -o json",
		Args:              argsRange(1, 1),
		ValidArgsFunction: completeSandboxNames(app),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output, "text", "json"); err != nil {
				return err
			}
			if err := checkSandboxName(args[0]); err != nil {
				return err
			}
			in, err := supervisor.Inspect(cmd.Context(), app.Home, args[0], statusTimeout)
			if err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(app.Out, in)
			}
			row := func(k, v string) {
				if v != "" {
					printf(app.Out, "%-12s %s\n", k+":", v)
				}
			}
			row("name", in.Name)
			row("state", in.Summary())
			if in.State == supervisor.StateRunning {
				row("pid", strconv.Itoa(in.Pid))
				row("supervisor", strconv.Itoa(in.SupervisorPid))
				row("uptime", in.Uptime(time.Now()))
				row("policy", "generation "+genLabel(in))
				row("pending", pendingLabel(in)+" waiting for approval (nemoclaw policy approvals "+in.Name+")")
			}
			if in.Blueprint != "" {
				row("blueprint", blueprintLabel(in))
			}
			if !in.Started.IsZero() {
				row("started", in.Started.Format(time.RFC3339))
			}
			if !in.Ended.IsZero() {
				row("ended", in.Ended.Format(time.RFC3339))
			}
			if len(in.Command) > 0 {
				row("command", egress.Printable(strings.Join(in.Command, " ")))
			}
			row("workspace", in.Workspace)
			row("directory", in.Dir)
			row("problem", in.Problem)
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

func newSandboxStopCmd(app *App) *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "stop NAME",
		Short: "Stop a running sandbox: SIGTERM to its agent, then kill after --stop-timeout",
		Long: `Stop asks the sandbox's supervisor to end the agent with SIGTERM and, if it
has not exited after --stop-timeout, kills everything in the sandbox. It
returns once the supervisor has exited. The sandbox's directory (kept
workspace, logs, audit log, saved approvals) stays: ` + "`nemoclaw sandbox destroy`" + `
removes it.`,
		Example:           "  nemoclaw sandbox stop my-sandbox --stop-timeout 2s",
		Args:              argsRange(1, 1),
		ValidArgsFunction: completeSandboxNames(app),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkSandboxName(args[0]); err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), max(timeout, 0)+30*time.Second)
			defer cancel()
			in, err := supervisor.StopSandbox(ctx, app.Home, args[0], timeout)
			if err != nil {
				return controlErr(err)
			}
			printf(app.Out, "%s: %s\n", args[0], in.Summary())
			return nil
		},
	}
	cmd.Flags().DurationVar(&timeout, "stop-timeout", sandbox.DefaultStopTimeout, "how long the agent has to exit after the SIGTERM before the sandbox is killed; 0: at once")
	return cmd
}

func newSandboxStartCmd(app *App) *cobra.Command {
	var superviseFd int
	var runID string
	cmd := &cobra.Command{
		Use:   "start NAME",
		Short: "Bring a stopped sandbox back, detached: same command, workspace, policy and saved approvals",
		Long: `Start runs a stopped sandbox (or one whose supervisor died, after a kill or a
reboot) again in the background, as ` + "`sandbox run --detach`" + ` would: the same
command, environment, workspace (a --keep workspace or the --workdir it
had), the network policy it last ran under (live changes included), and
the approvals saved with --save. It prints the name once the agent runs.`,
		Example:           "  nemoclaw sandbox start my-sandbox",
		Args:              argsRange(1, 1),
		ValidArgsFunction: completeSandboxNames(app),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkSandboxName(args[0]); err != nil {
				return err
			}
			return startSandbox(cmd.Context(), app, args[0], runID, superviseFd, false)
		},
	}
	cmd.Flags().IntVar(&superviseFd, superviseFlag, 0, "")
	_ = cmd.Flags().MarkHidden(superviseFlag)
	// --run ID: the run record (blueprint rollback's) this start fills in.
	cmd.Flags().StringVar(&runID, runFlag, "", "")
	_ = cmd.Flags().MarkHidden(runFlag)
	return cmd
}

// startSandbox is `sandbox start name`: the launcher, which detaches, or
// with superviseFd the detached supervisor, which fills in run record
// runID (a rollback's) if given. quiet leaves the name unprinted.
func startSandbox(ctx context.Context, app *App, name, runID string, superviseFd int, quiet bool) error {
	l, err := supervisor.LoadLaunch(app.Home, name)
	if err != nil {
		return err
	}
	o := &sandboxRunOpts{
		name: name, workdir: l.Workdir, keep: l.KeepWorkspace, noTTY: true, stopTimeout: l.StopTimeout,
		pol: l.Policy, env: l.Env, blueprint: l.Blueprint, version: l.Version,
		approvals: l.Approvals, approvalTimeout: l.ApprovalTimeout, detach: true, superviseFd: superviseFd,
		quiet: quiet, gpuDefault: l.GPUs, tools: l.Tools,
		inference: restartInference(app, l.Inference),
	}
	o.gpus.cdiDirs = l.CDIDirs
	if runID != "" {
		o.args = []string{"sandbox", "start", name, "--" + runFlag, runID}
		if superviseFd != 0 {
			return runTracked(ctx, app, runStore(app), runID, o, l.Command)
		}
	}
	return runSandbox(ctx, app, o, l.Command)
}

func newSandboxDestroyCmd(app *App) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "destroy NAME",
		Short: "Remove a sandbox: its processes, cgroup and directory (kept workspace, logs, approvals)",
		Long: `Destroy removes everything nemoclaw keeps of a sandbox: what its dead
supervisor left (processes, cgroup) and its directory under
$NEMOCLAW_HOME/sandboxes with the kept workspace, logs, audit log and saved
approvals. A --workdir on the host is yours and stays. A running sandbox is
refused unless --force, which kills it first.`,
		Example:           "  nemoclaw sandbox destroy my-sandbox\n  nemoclaw sandbox destroy --force my-sandbox",
		Args:              argsRange(1, 1),
		ValidArgsFunction: completeSandboxNames(app),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkSandboxName(args[0]); err != nil {
				return err
			}
			if err := supervisor.Destroy(cmd.Context(), supervisor.DestroyConfig{Home: app.Home, Name: args[0], Force: force}); err != nil {
				return err
			}
			printf(app.Out, "destroyed %s\n", args[0])
			return nil
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "kill a running sandbox first")
	return cmd
}

func newSandboxLogsCmd(app *App) *cobra.Command {
	var (
		follow, audit bool
		output        string
	)
	cmd := &cobra.Command{
		Use:   "logs NAME",
		Short: "Print a detached sandbox's agent output, or with --audit its egress audit log",
		Long: `Logs prints what the agent of a detached sandbox wrote (a foreground agent
writes to its terminal instead), or with --audit the egress audit log: one
line per decision, allowed or denied, with the rule that decided.
--follow keeps printing what comes until the sandbox stops. With -o json
audit events are printed as the JSON lines they are stored as, and agent
output as {"line": ...} objects. Agent-written text is escaped when the
output is a terminal, so that it cannot repaint the screen.`,
		Example: `  nemoclaw sandbox logs my-sandbox --follow
  nemoclaw sandbox logs my-sandbox --audit -o json`,
		Args:              argsRange(1, 1),
		ValidArgsFunction: completeSandboxNames(app),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output, "text", "json"); err != nil {
				return err
			}
			name := args[0]
			if err := checkSandboxName(name); err != nil {
				return err
			}
			dir := supervisor.Dir(app.Home, name)
			if st, err := os.Stat(dir); err != nil || !st.IsDir() {
				return fmt.Errorf("logs %s: no such sandbox under %s (see nemoclaw sandbox list)", name, filepath.Join(app.Home, "sandboxes"))
			}
			file := supervisor.AgentLogFile
			if audit {
				file = supervisor.AuditFile
			}
			format := formatAgentLine
			switch {
			case audit && output == "json":
				format = func(l string, _ bool) string { return l }
			case audit:
				format = formatAuditLine
			case output == "json":
				format = func(l string, _ bool) string {
					b, _ := json.Marshal(struct {
						Line string `json:"line"`
					}{l})
					return string(b)
				}
			}
			_, err := os.Stat(filepath.Join(dir, file))
			if err != nil && follow && !audit && !supervisor.Detached(app.Home, name) {
				follow = false // a foreground agent's output will never be in a file
			}
			if err != nil && !follow {
				what := "agent output: its agent ran in the foreground, on its terminal"
				if audit {
					what = "audit log: its agent made no connection yet"
				}
				printf(app.Err, "%s: no %s\n", name, what)
				return nil
			}
			fc := supervisor.FollowConfig{Path: filepath.Join(dir, file), Line: func(l string) {
				printf(app.Out, "%s\n", format(l, isTerminal(app.Out)))
			}}
			if follow {
				fc.Running = func() bool { return supervisor.Running(app.Home, name) }
			}
			return supervisor.Follow(cmd.Context(), fc)
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new lines until the sandbox stops")
	cmd.Flags().BoolVar(&audit, "audit", false, "print the egress audit log instead of the agent's output")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

// formatAgentLine is a line of agent output, escaped for a terminal.
func formatAgentLine(l string, terminal bool) string {
	if terminal {
		return egress.Printable(l)
	}
	return l
}

// formatAuditLine renders one audit event for a human; every
// agent-controlled field is escaped.
func formatAuditLine(l string, _ bool) string {
	var e egress.Event
	if err := json.Unmarshal([]byte(l), &e); err != nil {
		return "? " + egress.Printable(l)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %-5s %-8s %s", e.Time.Local().Format("2006-01-02 15:04:05"), e.Decision, e.Activity,
		egress.Printable(net.JoinHostPort(e.Host, strconv.Itoa(e.Port))))
	if e.Method != "" || e.Path != "" {
		fmt.Fprintf(&b, " %s %s", egress.Printable(e.Method), egress.Printable(e.Path))
	}
	if e.Binary != "" {
		fmt.Fprintf(&b, " by %s", egress.Printable(e.Binary))
	}
	if e.Rule != "" {
		fmt.Fprintf(&b, " rule=%s", egress.Printable(e.Rule))
	}
	if e.Reason != "" {
		fmt.Fprintf(&b, " (%s)", egress.Printable(e.Reason))
	}
	if e.Count > 0 {
		fmt.Fprintf(&b, " x%d", e.Count)
	}
	return b.String()
}
