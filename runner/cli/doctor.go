package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/nemoclaw/nemoclaw/runner/policy"
	"github.com/nemoclaw/nemoclaw/runner/sandbox"
	"github.com/nemoclaw/nemoclaw/runner/state"
)

func init() {
	register(newDoctorCmd)
}

// gpuCheck reports NVML presence and the GPUs found (gpuChecks' first).
func gpuCheck(app *App) state.Check {
	return gpuChecks(app)[0]
}

// preflight gathers the host checks that matter for applying pol: kernel
// isolation features (fatal where the policy demands them) and GPUs.
func preflight(app *App, pol *policy.Policy) []state.Check {
	checks := kernelChecks(pol)
	return append(checks, gpuCheck(app))
}

func newDoctorCmd(app *App) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check this host's kernel features and GPUs, and say what each enables",
		Long: `Doctor probes Landlock (and its ABI), seccomp, user and network namespaces,
cgroup v2 delegation, idmapped mounts and NVML, and for each says what it enables and what is
lost without it. It exits 0 when the default blueprint can run fully
isolated, 1 otherwise.`,
		Args: argsRange(0, 0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output, "text", "json"); err != nil {
				return err
			}
			checks := append(kernelChecks(nil), gpuChecks(app)...)
			if output == "json" {
				if err := writeJSON(app.Out, checks); err != nil {
					return err
				}
			} else {
				for _, c := range checks {
					mark := "ok  "
					if !c.OK {
						mark = "MISS"
					}
					printf(app.Out, "[%s] %-30s %s\n", mark, c.Name, c.Detail)
				}
			}
			for _, c := range checks {
				if !c.OK && (c.Fatal || c.Name == "landlock") {
					return ExitStatus(ExitError)
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

// kernelChecks turns the sandbox's feature probe into preflight checks; a
// feature the sandbox cannot start without, or that pol demands
// (hard_requirement Landlock), is fatal when missing.
func kernelChecks(pol *policy.Policy) []state.Check {
	f := sandbox.Probe()
	var out []state.Check
	for _, c := range f.Checks() {
		sc := state.Check{Name: c.Name, OK: c.OK}
		if c.OK {
			sc.Detail = fmt.Sprintf("%s: %s", c.Detail, c.Enables)
		} else {
			sc.Detail = fmt.Sprintf("%s: without it, %s", c.Detail, c.Without)
		}
		switch c.Name {
		case "seccomp", "network namespaces":
			sc.Fatal = true
		case "landlock":
			sc.Fatal = f.LandlockABI == 0 && pol != nil && pol.Landlock.HardRequired()
		}
		out = append(out, sc)
	}
	return out
}
