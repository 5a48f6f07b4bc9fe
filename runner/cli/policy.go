package cli

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/nemoclaw/nemoclaw/runner/policy"
)

func init() {
	registerPolicy(newPolicyValidateCmd)
	registerPolicy(newPolicyShowCmd)
}

// isPreset reports whether a YAML document is a preset (has a top-level
// "preset" key) rather than a policy.
func isPreset(data []byte) bool { return policy.IsPreset(data) }

func newPolicyValidateCmd(app *App) *cobra.Command {
	return &cobra.Command{
		Use:   "validate FILE",
		Short: "Check a sandbox policy, preset or tiers file strictly",
		Long: `Validate decodes a sandbox policy (version: 1), a preset (a file with a
top-level preset: key) or NemoClaw's policy tiers (a top-level tiers: key) strictly and checks it against the JSON Schema and the
semantic rules. Every problem is printed as file:line:column. Fields that are
accepted but not enforced are listed as findings.`,
		Example: `  nemoclaw policy validate policies/sandbox.yaml
  nemoclaw policy validate policies/presets/pypi.yaml
  nemoclaw policy validate policies/tiers.yaml`,
		Args: argsRange(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			file := args[0]
			data, err := os.ReadFile(file)
			if err != nil {
				return fmt.Errorf("read policy: %w", err)
			}
			var warns policy.Problems
			kind := "policy"
			if isPreset(data) {
				kind = "preset"
				_, warns, err = policy.ParsePreset(file, data)
			} else if policy.IsTiers(data) {
				kind = "tiers file"
				_, warns, err = policy.ParseTiers(file, data)
			} else {
				_, warns, err = policy.Check(file, data)
			}
			if err != nil {
				return fmt.Errorf("%s %s is invalid:\n%w", kind, file, err)
			}
			printf(app.Out, "%s %s is valid\n", kind, file)
			printFindings(app.Out, warns)
			return nil
		},
	}
}

func newPolicyShowCmd(app *App) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "show [DIR|FILE|SANDBOX]",
		Short: "Print the effective policy of a blueprint (default: the embedded one) or a policy file in canonical form",
		Long: `Show prints the effective sandbox policy — the base policy with the
blueprint's additions and presets merged, every default made explicit — in
canonical form (sorted keys, ports as lists, enforcement spelled out).
For a running sandbox's name it prints the policy in force (after policy
set/add) and, as comments, the approvals granted for the sandbox's life.`,
		Example: `  nemoclaw policy show
  nemoclaw policy show ./my-blueprint --output json
  nemoclaw policy show policies/sandbox.yaml
  nemoclaw policy show my-sandbox`,
		Args: argsRange(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output, "yaml", "json"); err != nil {
				return err
			}
			if len(args) == 1 && liveSandboxArg(app, args[0]) {
				return showLivePolicy(cmd, app, args[0], output)
			}
			var p *policy.Policy
			if len(args) == 1 {
				if st, err := os.Stat(args[0]); err == nil && !st.IsDir() {
					p, err = policy.LoadFile(args[0])
					if err != nil {
						return err
					}
				}
			}
			if p == nil {
				b, err := loadBlueprintArg(args)
				if err != nil {
					return err
				}
				p = b.Policy
			}
			if output == "json" {
				return writeJSON(app.Out, policy.Normalize(p))
			}
			out, err := policy.Canonical(p)
			if err != nil {
				return err
			}
			_, err = app.Out.Write(out)
			return err
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "yaml", "output format: yaml or json")
	return cmd
}
