package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/nemoclaw/nemoclaw/runner/blueprint"
	"github.com/nemoclaw/nemoclaw/runner/egress"
	"github.com/nemoclaw/nemoclaw/runner/policy"
	"github.com/nemoclaw/nemoclaw/runner/sandbox"
	"github.com/nemoclaw/nemoclaw/runner/supervisor"
)

func init() {
	registerPolicy(newPolicyApprovalsCmd)
	registerPolicy(newPolicyApproveCmd)
	registerPolicy(newPolicyDenyCmd)
	registerPolicy(newPolicySetCmd)
	registerPolicy(newPolicyAddCmd)
}

// controlClient returns the control-API client of a running sandbox's
// supervisor.
func controlClient(app *App, name string) (*supervisor.Client, error) {
	if !sandbox.ValidName(name) || strings.Contains(name, "..") {
		return nil, Usage(fmt.Errorf("sandbox name %q: want lowercase letters, digits, '.', '_' or '-'", name))
	}
	return supervisor.NewClient(app.Home, name), nil
}

// controlErr maps a control-socket error to the CLI's exit codes.
func controlErr(err error) error {
	var ce *egress.ControlError
	if errors.As(err, &ce) && ce.Refused {
		return Refused(err)
	}
	return err
}

func newPolicyApprovalsCmd(app *App) *cobra.Command {
	var list bool
	var output, revoke string
	cmd := &cobra.Command{
		Use:   "approvals SANDBOX",
		Short: "Review destinations a running sandbox was refused, and approve or deny them (terminal UI)",
		Long: `Approvals opens a terminal UI over the running sandbox's approval queue:
every host:port that the policy refused is listed with the program that asked.
Keys: j/k or arrows move, enter shows details, a approves, s approves and saves
(the approval then also applies to the next run of the same sandbox name),
d denies, A approves all, q quits. Approvals last for the sandbox's life.

Without a terminal, or with --list, it prints the queue and the approvals
granted so far once and exits (--output json prints the queue only; the
granted ones are in ` + "`nemoclaw policy show SANDBOX --output json`" + `).
--revoke HOST:PORT withdraws an approval, saved or not: later requests to it
are refused (or queued again) and a saved one is removed from the approvals
file. Connections it already admitted are not cut.`,
		Example: `  nemoclaw policy approvals my-sandbox
  nemoclaw policy approvals my-sandbox --list --output json
  nemoclaw policy approvals my-sandbox --revoke api.example.com:443`,
		Args:              argsRange(1, 1),
		ValidArgsFunction: completeSandboxNames(app),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output, "text", "json"); err != nil {
				return err
			}
			c, err := controlClient(app, args[0])
			if err != nil {
				return err
			}
			if revoke != "" {
				ap, err := c.Revoke(cmd.Context(), revoke)
				if err != nil {
					return controlErr(err)
				}
				how := "for this run"
				if ap.Saved {
					how = "for this run and removed from the saved approvals"
				}
				printf(app.Out, "revoked %s %s\n", egress.Printable(egress.ApprovalID(*ap)), how)
				return nil
			}
			in, _ := app.In.(*os.File)
			out, _ := app.Out.(*os.File)
			interactive := !list && in != nil && out != nil && term.IsTerminal(int(in.Fd())) && term.IsTerminal(int(out.Fd()))
			if !interactive {
				st, err := c.Client.Status(cmd.Context())
				if err != nil {
					return controlErr(err)
				}
				if err := printPending(app, st.Pending, output); err != nil || output == "json" {
					return err
				}
				printGranted(app, st.Approvals)
				return nil
			}
			old, err := term.MakeRaw(int(in.Fd()))
			if err != nil {
				return fmt.Errorf("approvals: raw terminal: %w", err)
			}
			defer func() { _ = term.Restore(int(in.Fd()), old); printf(app.Out, "\n") }()
			return controlErr(runApprovalsUI(cmd.Context(), &c.Client, args[0], in, out))
		},
	}
	cmd.Flags().BoolVar(&list, "list", false, "print the queue and exit instead of opening the UI")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format with --list: text or json")
	cmd.Flags().StringVar(&revoke, "revoke", "", "withdraw the approval of HOST:PORT (as --list shows it) and exit")
	return cmd
}

// printGranted lists the approvals granted so far, by the id --revoke takes.
func printGranted(app *App, grants []egress.Approval) {
	if len(grants) == 0 {
		printf(app.Out, "no destinations are approved\n")
		return
	}
	printf(app.Out, "\n%-46s %s\n", "APPROVED (revoke with --revoke)", "LASTS")
	for _, g := range grants {
		how := "this run"
		if g.Saved {
			how = "saved: this run and the next ones"
		}
		printf(app.Out, "%-46s %s\n", egress.Printable(egress.ApprovalID(g)), how)
	}
}

// liveSandboxArg reports whether the argument of `policy show` names a
// sandbox of this host rather than a file or directory: an existing path
// wins (as before sandboxes had names); otherwise a sandbox directory.
func liveSandboxArg(app *App, arg string) bool {
	if _, err := os.Stat(arg); err == nil || !sandbox.ValidName(arg) || strings.Contains(arg, "..") {
		return false
	}
	_, err := os.Stat(supervisor.Dir(app.Home, arg))
	return err == nil
}

// livePolicy is `policy show SANDBOX --output json`.
type livePolicy struct {
	Sandbox    string            `json:"sandbox"`
	Generation uint64            `json:"generation"`
	Policy     *policy.Policy    `json:"policy"`
	Approvals  []egress.Approval `json:"approvals"`
}

// showLivePolicy prints the policy in force in a running sandbox, in the
// canonical form `policy show FILE` prints, followed by the approvals
// granted for its life. They are YAML comments, not policy: the output
// stays a valid policy file for `policy set`, which never carries them.
func showLivePolicy(cmd *cobra.Command, app *App, name, output string) error {
	c, err := controlClient(app, name)
	if err != nil {
		return err
	}
	r, err := c.LivePolicy(cmd.Context())
	if err != nil {
		return controlErr(fmt.Errorf("policy show %s: %w", name, err))
	}
	if r.Policy == nil {
		return fmt.Errorf("policy show %s: the supervisor sent no policy; it may be older than this nemoclaw: restart the sandbox", name)
	}
	if output == "json" {
		aps := r.Approvals
		if aps == nil {
			aps = []egress.Approval{}
		}
		return writeJSON(app.Out, livePolicy{Sandbox: name, Generation: r.Generation, Policy: policy.Normalize(r.Policy), Approvals: aps})
	}
	out, err := policy.Canonical(r.Policy)
	if err != nil {
		return fmt.Errorf("policy show %s: %w", name, err)
	}
	printf(app.Out, "# sandbox %s: the network policy in force, generation %d\n", name, r.Generation)
	if _, err := app.Out.Write(out); err != nil {
		return err
	}
	if len(r.Approvals) == 0 {
		printf(app.Out, "# approvals: none granted\n")
		return nil
	}
	printf(app.Out, "# approvals granted while the sandbox runs (in force, but not part of the policy;\n# revoke with `nemoclaw policy approvals %s --revoke HOST:PORT`):\n", name)
	for _, g := range r.Approvals {
		how := "this run"
		if g.Saved {
			how = "saved"
		}
		printf(app.Out, "#   %-44s %s\n", egress.Printable(egress.ApprovalID(g)), how)
	}
	return nil
}

func printPending(app *App, items []egress.Pending, output string) error {
	if output == "json" {
		if items == nil {
			items = []egress.Pending{}
		}
		enc := json.NewEncoder(app.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(items)
	}
	if len(items) == 0 {
		printf(app.Out, "no destinations are waiting for approval\n")
		return nil
	}
	printf(app.Out, "%-5s %-40s %-30s %-8s %s\n", "ID", "DESTINATION", "PROGRAM", "WAITING", "FIRST REQUEST")
	for _, it := range items {
		// Every field but the counts is agent-controlled: escaped, so that
		// a program path cannot repaint the operator's screen.
		bin := egress.Printable(it.Binary)
		if bin == "" {
			bin = "?"
		}
		printf(app.Out, "%-5s %-40s %-30s %-8d %s %s (%s ago)\n", egress.Printable(it.ID), egress.Printable(net.JoinHostPort(it.Host, strconv.Itoa(it.Port))), bin, it.Waiting,
			egress.Printable(it.Method), egress.Printable(it.Path), time.Since(it.Since).Truncate(time.Second))
	}
	return nil
}

func newPolicyDecideCmd(app *App, approve bool) *cobra.Command {
	var save bool
	use, short := "deny SANDBOX ID", "Deny a destination waiting in a running sandbox's approval queue"
	if approve {
		use, short = "approve SANDBOX ID", "Approve a destination waiting in a running sandbox's approval queue"
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Long: short + `.
IDs come from ` + "`nemoclaw policy approvals SANDBOX --list`" + `. An approval lets
every later request to that host:port through for the sandbox's life; with
--save it also applies to later runs of the same sandbox name.`,
		Example:           "  nemoclaw policy " + strings.Fields(use)[0] + " my-sandbox 3",
		Args:              argsRange(2, 2),
		ValidArgsFunction: completeSandboxNames(app),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := controlClient(app, args[0])
			if err != nil {
				return err
			}
			d, err := c.Decide(cmd.Context(), args[1], approve, save)
			if err != nil {
				return controlErr(err)
			}
			printf(app.Out, "%s %s (request #%s)\n", decisionVerb(approve, save), egress.Printable(net.JoinHostPort(d.Host, strconv.Itoa(d.Port))), egress.Printable(d.ID))
			return nil
		},
	}
	if approve {
		cmd.Flags().BoolVar(&save, "save", false, "also apply the approval to later runs of this sandbox name")
	}
	return cmd
}

func newPolicyApproveCmd(app *App) *cobra.Command { return newPolicyDecideCmd(app, true) }
func newPolicyDenyCmd(app *App) *cobra.Command    { return newPolicyDecideCmd(app, false) }

func newPolicySetCmd(app *App) *cobra.Command {
	return &cobra.Command{
		Use:   "set SANDBOX FILE",
		Short: "Replace a running sandbox's network policy",
		Long: `Set validates FILE and swaps the running sandbox's network policy for its
network_policies in one step: requests already in flight finish under the old
generation, every later request uses the new one. An invalid file is refused
and the running policy stays. filesystem_policy, landlock, process and
resources are locked when the sandbox starts: FILE may omit them or repeat
them unchanged.`,
		Example:           "  nemoclaw policy set my-sandbox policies/sandbox.yaml",
		Args:              argsRange(2, 2),
		ValidArgsFunction: completeSandboxNames(app),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := controlClient(app, args[0])
			if err != nil {
				return err
			}
			p, err := policy.LoadFile(args[1])
			if err != nil {
				return Refused(fmt.Errorf("policy set: %w", err))
			}
			gen, err := c.SetPolicy(cmd.Context(), p)
			if err != nil {
				return controlErr(fmt.Errorf("policy set %s: %w", args[0], err))
			}
			printf(app.Out, "sandbox %s: network policy from %s in force (generation %d)\n", args[0], args[1], gen)
			return nil
		},
	}
}

func newPolicyAddCmd(app *App) *cobra.Command {
	return &cobra.Command{
		Use:   "add SANDBOX PRESET",
		Short: "Merge a preset into a running sandbox's network policy",
		Long: `Add merges a preset's network policies into the running sandbox's policy
(the preset wins on a name collision) without restarting it. PRESET is the
name of a preset of the embedded default blueprint (pypi, npm, telegram, ...)
or the path of a preset file.`,
		Example: `  nemoclaw policy add my-sandbox pypi
  nemoclaw policy add my-sandbox ./presets/internal-api.yaml`,
		Args:              argsRange(2, 2),
		ValidArgsFunction: completeSandboxThenPreset(app),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := controlClient(app, args[0])
			if err != nil {
				return err
			}
			pr, err := loadPreset(args[1])
			if err != nil {
				return err
			}
			gen, err := c.AddPreset(cmd.Context(), pr)
			if err != nil {
				return controlErr(fmt.Errorf("policy add %s: %w", args[0], err))
			}
			printf(app.Out, "sandbox %s: preset %s added (generation %d)\n", args[0], pr.Meta.Name, gen)
			return nil
		},
	}
}

// loadPreset resolves a preset name of the default blueprint, or a file.
func loadPreset(arg string) (*policy.Preset, error) {
	if strings.ContainsAny(arg, "/.") {
		pr, err := policy.LoadPresetFile(arg)
		if err != nil {
			return nil, Refused(fmt.Errorf("policy add: %w", err))
		}
		return pr, nil
	}
	b, err := blueprint.Default()
	if err != nil {
		return nil, fmt.Errorf("policy add: default blueprint: %w", err)
	}
	if pr, ok := b.Available[arg]; ok {
		return pr, nil
	}
	var names []string
	for n := range b.Available {
		names = append(names, n)
	}
	return nil, Usage(fmt.Errorf("policy add: no preset %q in the default blueprint; available: %s (or give a preset file path)", arg, strings.Join(sortedPresetNames(names), ", ")))
}

func sortedPresetNames(s []string) []string {
	out := append([]string(nil), s...)
	slices.Sort(out)
	return out
}
