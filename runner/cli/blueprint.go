package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/nemoclaw/nemoclaw/runner/blueprint"
	"github.com/nemoclaw/nemoclaw/runner/gpu"
	"github.com/nemoclaw/nemoclaw/runner/internal/strictyaml"
	"github.com/nemoclaw/nemoclaw/runner/state"
)

func init() {
	registerBlueprint(newBlueprintValidateCmd)
	registerBlueprint(newBlueprintPlanCmd)
}

// loadBlueprintArg loads DIR, or the embedded default blueprint when args is
// empty.
func loadBlueprintArg(args []string) (*blueprint.Blueprint, error) {
	if len(args) == 0 || args[0] == blueprint.EmbeddedDefault {
		return blueprint.Default()
	}
	return blueprint.Load(args[0])
}

// checkOutput validates an --output value.
func checkOutput(o string, allowed ...string) error {
	for _, a := range allowed {
		if o == a {
			return nil
		}
	}
	return Usage(fmt.Errorf("--output %q: want %s", o, strings.Join(allowed, " or ")))
}

// CheckOutput validates an --output value against the allowed formats; a
// bad one is a usage error (exit code 2).
func CheckOutput(o string, allowed ...string) error { return checkOutput(o, allowed...) }

// WriteJSON prints v to w as JSON indented by two spaces, as every
// `--output json` does.
func WriteJSON(w io.Writer, v any) error { return writeJSON(w, v) }

// writeJSON prints v as indented JSON.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// validationResult is `blueprint validate --output json`.
type validationResult struct {
	Valid    bool                `json:"valid"`
	Dir      string              `json:"dir"`
	Version  string              `json:"version,omitempty"`
	Errors   strictyaml.Problems `json:"errors,omitempty"`
	Findings strictyaml.Problems `json:"findings,omitempty"`
}

func newBlueprintValidateCmd(app *App) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "validate [DIR]",
		Short: "Check a blueprint directory (default: the embedded blueprint) against the schema and semantic rules",
		Long: `Validate loads blueprint.yaml, its base policy, additions and presets, and
checks them strictly: unknown or duplicate keys, schema violations and
semantic errors are reported with file:line:column. Fields that are kept but
not acted on are listed as findings. Without DIR the embedded default
blueprint is validated.`,
		Example: `  nemoclaw blueprint validate
  nemoclaw blueprint validate ./my-blueprint --output json`,
		Args: argsRange(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output, "text", "json"); err != nil {
				return err
			}
			b, err := loadBlueprintArg(args)
			dir := blueprint.EmbeddedDefault
			if len(args) > 0 {
				dir = args[0]
			}
			if output == "json" {
				res := validationResult{Valid: err == nil, Dir: dir}
				if err != nil {
					res.Errors = strictyaml.AsProblems(err)
					if res.Errors == nil {
						res.Errors = strictyaml.Problems{{File: dir, Message: err.Error()}}
					}
				} else {
					res.Version, res.Findings = b.Version, b.Findings
				}
				if werr := writeJSON(app.Out, res); werr != nil {
					return werr
				}
				if err != nil {
					return ExitStatus(ExitError)
				}
				return nil
			}
			if err != nil {
				return fmt.Errorf("blueprint %s is invalid:\n%w", dir, err)
			}
			printf(app.Out, "blueprint %s is valid: version %s, %d inference profile(s), policy %s with %d network policy group(s), %d preset(s) available\n",
				dir, b.Version, len(b.Profiles), b.PolicyFile, len(b.Policy.NetworkPolicies), len(b.Available))
			printFindings(app.Out, b.Findings)
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

// printFindings lists warnings and notes under a heading.
func printFindings(w io.Writer, fs strictyaml.Problems) {
	if len(fs) == 0 {
		return
	}
	printf(w, "\nfindings (%d):\n", len(fs))
	for _, f := range fs {
		printf(w, "  - %s\n", f.Error())
	}
}

func newBlueprintPlanCmd(app *App) *cobra.Command {
	var output, profile, name string
	cmd := &cobra.Command{
		Use:   "plan [DIR]",
		Short: "Show what apply would do: sandbox, policy, inference route and preflight findings",
		Long: `Plan loads and validates the blueprint, picks the inference profile, checks
the host's kernel features and prints what apply would do, without changing
anything. It exits 3 when apply would refuse (e.g. a version gate, or
hard_requirement Landlock on a kernel without it).`,
		Example: `  nemoclaw blueprint plan
  nemoclaw blueprint plan ./my-blueprint --profile ollama --output json`,
		Args: argsRange(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output, "text", "json"); err != nil {
				return err
			}
			b, err := loadBlueprintArg(args)
			if err != nil {
				return err
			}
			inv, gerr := gpu.Detect(gpu.Config{Logger: app.Logger})
			p, err := state.MakePlan(b, state.PlanOptions{Profile: profile, Home: app.Home, Name: name, Preflight: preflight(app, b.Policy), GPUs: inv, GPUErr: gerr})
			if err != nil {
				return Usage(err)
			}
			if output == "json" {
				if err := writeJSON(app.Out, p); err != nil {
					return err
				}
			} else {
				printPlan(app.Out, p)
				if line := planBackendLine(cmd.Context(), app, b, p); line != "" {
					printf(app.Out, "inference backend %s\n", line)
				}
			}
			if len(p.Refusals) > 0 {
				return Refused(fmt.Errorf("apply would refuse: %s", strings.Join(p.Refusals, "; ")))
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	cmd.Flags().StringVarP(&profile, "profile", "p", "", "inference profile, or auto for the best this host's GPUs can run (default: the blueprint's default_profile or first profile)")
	cmd.Flags().StringVar(&name, "name", "", "sandbox name (default: the blueprint's components.sandbox.name)")
	return cmd
}

// printPlan renders a plan for people.
func printPlan(w io.Writer, p *state.Plan) {
	printf(w, "blueprint  %s (version %s)\n", p.Blueprint.Dir, p.Blueprint.Version)
	printf(w, "sandbox    %s\n", p.Sandbox.Name)
	printf(w, "  command    %s\n", strings.Join(p.Sandbox.Command, " "))
	printf(w, "  workspace  %s -> /sandbox\n", p.Sandbox.Workspace)
	if len(p.Sandbox.EnvKeys) > 0 {
		printf(w, "  env        %s\n", strings.Join(p.Sandbox.EnvKeys, ", "))
	}
	printf(w, "policy     %s\n", p.Policy.File)
	printf(w, "  landlock   %s\n", p.Policy.Landlock)
	printf(w, "  run as     %s\n", p.Policy.RunAs)
	printf(w, "  read-only  %s\n", strings.Join(p.Policy.ReadOnly, " "))
	printf(w, "  read-write %s\n", strings.Join(p.Policy.ReadWrite, " "))
	if r := p.Policy.Resources; r != nil {
		printf(w, "  resources  memory=%s pids=%d cpu=%s open_files=%d\n", orDash(r.Memory), r.Pids, orDash(r.CPU), r.OpenFiles)
	}
	if len(p.Policy.Network) == 0 {
		printf(w, "  network    none: every connection is refused\n")
	}
	for _, g := range p.Policy.Network {
		who := "every program"
		if len(g.Binaries) > 0 {
			who = strings.Join(g.Binaries, ", ")
		}
		printf(w, "  network    %s (for %s)\n", g.Key, who)
		for _, e := range g.Endpoints {
			printf(w, "               %s\n", e)
		}
	}
	if inf := p.Inference; inf != nil {
		cred := "none needed"
		if inf.CredentialEnv != "" {
			cred = inf.CredentialEnv + " (missing)"
			if inf.CredentialPresent {
				cred = inf.CredentialEnv + " (set on the host; never passed to the agent)"
			}
		}
		printf(w, "inference  profile %s: inference.local -> %s %s model %s via %s\n", inf.Profile, inf.ProviderType, orDash(inf.Endpoint), orDash(inf.Model), inf.Plugin)
		printf(w, "  credential %s\n", cred)
	}
	if g := p.GPU; g != nil && g.Count > 0 {
		printf(w, "gpu        %d GPU(s), min %.0f GiB, compute >= %s\n", g.Count, g.MinMemoryGiB, orDash(g.MinComputeCapability))
	}
	printProfiles(w, p)
	if len(p.Preflight) > 0 {
		printf(w, "preflight\n")
		for _, c := range p.Preflight {
			mark := "ok  "
			if !c.OK {
				mark = "MISS"
			}
			printf(w, "  [%s] %-30s %s\n", mark, c.Name, c.Detail)
		}
	}
	printFindings(w, p.Findings)
	if len(p.Refusals) > 0 {
		printf(w, "\napply would refuse:\n")
		for _, r := range p.Refusals {
			printf(w, "  - %s\n", r)
		}
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
