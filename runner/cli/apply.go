package cli

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/nemoclaw/nemoclaw/runner/blueprint"
	"github.com/nemoclaw/nemoclaw/runner/gpu"
	"github.com/nemoclaw/nemoclaw/runner/state"
	"github.com/nemoclaw/nemoclaw/runner/supervisor"
)

func init() {
	registerBlueprint(newBlueprintApplyCmd)
}

// applyOpts are the flags of `blueprint apply`.
type applyOpts struct {
	profile, name, workdir string
	dryRun, tty, noTTY     bool
	stopTimeout            time.Duration
	// detach and superviseFd are sandboxRunOpts's.
	detach      bool
	superviseFd int
	source      *SourceFlags
	gpus        gpuFlags
	// tools is --tools: a read-only tools tree (runner/tools) bound at
	// sandbox.ToolsPath (`nemoclaw onboard` sets it).
	tools string
}

func newBlueprintApplyCmd(app *App) *cobra.Command {
	var o applyOpts
	cmd := &cobra.Command{
		Use:   "apply [DIR|REF] [-- CMD [ARGS...]]",
		Short: "Run the agent in the sandbox a blueprint describes (default: the embedded blueprint)",
		Long: `Apply resolves the blueprint — the embedded default without an argument, a
local directory, or an OCI reference (tag, digest or --version constraint,
honouring nemoclaw.lock) that is fetched and signature-verified before
anything is unpacked — validates it, plans (profile, version gates, kernel
preflight) and starts the agent inside the sandbox with the blueprint's
effective policy and the egress proxy in front of its network.

Local directories are the only unsigned source accepted by default. Words
after -- replace the blueprint's agent command. The exit code is the agent's;
3 when verification or the plan refused.`,
		Example: `  nemoclaw blueprint apply
  nemoclaw blueprint apply ./my-blueprint --profile ollama
  nemoclaw blueprint apply registry.example.com/agents/coder --version "~> 1.2" --key team.pub
  nemoclaw blueprint apply -- python3 agent.py`,
		Args: func(cmd *cobra.Command, args []string) error {
			if n := cmd.ArgsLenAtDash(); n > 1 || (n < 0 && len(args) > 1) {
				return Usage(fmt.Errorf("apply takes one blueprint (DIR or REF); put a command after --"))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			src, command := args, []string(nil)
			if n := cmd.ArgsLenAtDash(); n >= 0 {
				src, command = args[:n], args[n:]
			}
			stopTimeoutGiven(cmd, &o.stopTimeout)
			return runApply(cmd, app, &o, src, command)
		},
	}
	f := cmd.Flags()
	addStopTimeoutFlag(f, &o.stopTimeout)
	f.StringVarP(&o.profile, "profile", "p", "", "inference profile, or auto for the best this host's GPUs can run (default: the blueprint's default)")
	f.StringVar(&o.name, "name", "", "sandbox name (default: the blueprint's components.sandbox.name)")
	f.StringVar(&o.workdir, "workdir", "", "host directory mounted at /sandbox, where the agent acts as its owner; its files keep their owners (default: $NEMOCLAW_HOME/sandboxes/<name>/workspace)")
	f.BoolVar(&o.dryRun, "dry-run", false, "resolve, verify and plan, then print the plan instead of starting the agent")
	f.BoolVar(&o.tty, "tty", false, "run on a pseudo-terminal (default: when stdin and stdout are terminals)")
	f.BoolVar(&o.noTTY, "no-tty", false, "never allocate a pseudo-terminal")
	addDetachFlags(f, &o.detach, &o.superviseFd)
	addGPUFlags(f, &o.gpus)
	f.StringVar(&o.tools, "tools", "", "a tools tree installed by nemoclaw onboard ($NEMOCLAW_HOME/tools/sha256-…), bound read-only at /nemoclaw/tools with its bin on PATH")
	// Profiles of the blueprint named, when it is the embedded one or a
	// directory (a registry reference is not fetched for a completion).
	_ = cmd.RegisterFlagCompletionFunc("profile", func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		var b *blueprint.Blueprint
		var err error
		if len(args) == 0 || args[0] == blueprint.EmbeddedDefault {
			b, err = blueprint.Default()
		} else if isLocalSource(args[0]) {
			b, err = blueprint.Load(args[0])
		}
		if b == nil || err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []cobra.Completion
		for _, p := range b.Profiles {
			if strings.HasPrefix(p, toComplete) {
				out = append(out, p)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	})
	o.source = addSourceFlags(cmd)
	return cmd
}

// resolveBlueprint loads the blueprint named by src: the embedded one, a
// local directory, or a verified OCI artifact (in nemoclaw-dist: the lean
// nemoclaw hands a registry reference's whole command line to it).
func resolveBlueprint(cmd *cobra.Command, app *App, o *applyOpts, src []string) (*blueprint.Blueprint, error) {
	return ResolveBlueprint(cmd, app, o.source, src)
}

// ResolveBlueprint loads the blueprint src names (none or
// "embedded:default": the embedded one; a local directory; a registry
// reference, fetched and verified by the RemoteSource, which sets s.Digest
// and s.Signer).
func ResolveBlueprint(cmd *cobra.Command, app *App, s *SourceFlags, src []string) (*blueprint.Blueprint, error) {
	if len(src) > 0 && src[0] == blueprint.EmbeddedOpenClaw {
		return blueprint.OpenClaw()
	}
	if len(src) == 0 || src[0] == blueprint.EmbeddedDefault {
		if s.Constraint != "" {
			return nil, Usage(errors.New("--version needs a registry reference"))
		}
		return blueprint.Default()
	}
	if !isLocalSource(src[0]) && !strings.Contains(src[0], "/") {
		return nil, Usage(fmt.Errorf("%s is neither a directory nor a registry reference (host/repo[:tag|@digest])", src[0]))
	}
	dir, err := s.resolve(cmd, app, src[0])
	if err != nil {
		return nil, err
	}
	return blueprint.Load(dir)
}

func runApply(cmd *cobra.Command, app *App, o *applyOpts, src, command []string) error {
	start := time.Now()
	b, err := resolveBlueprint(cmd, app, o, src)
	if err != nil {
		return err
	}
	popts := state.PlanOptions{Profile: o.profile, Home: app.Home, Name: o.name, Preflight: kernelChecks(b.Policy)}
	if o.profile == state.AutoProfile || b.Components.GPU != nil {
		popts.GPUs, popts.GPUErr = gpu.Detect(gpu.Config{Logger: app.Logger})
	}
	plan, err := state.MakePlan(b, popts)
	if err != nil {
		return Usage(err)
	}
	if len(command) > 0 {
		plan.Sandbox.Command = command
	}
	if o.workdir != "" {
		plan.Sandbox.Workspace = o.workdir
	}
	if o.dryRun {
		printPlan(app.Out, plan)
	}
	if len(plan.Refusals) > 0 {
		return Refused(fmt.Errorf("apply %s refused: %s", b.Dir, strings.Join(plan.Refusals, "; ")))
	}
	for _, f := range b.Findings {
		app.Logger.Info("blueprint finding", "finding", f.Error())
	}
	if o.dryRun {
		return nil
	}
	var env []string
	if s := b.Components.Sandbox; s != nil {
		keys := make([]string, 0, len(s.Env))
		for k := range s.Env {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			env = append(env, k+"="+s.Env[k])
		}
	}
	workdir := o.workdir
	if workdir == "" && b.Components.Sandbox != nil {
		workdir = b.Components.Sandbox.Workdir
	}
	app.Logger.Info("applying blueprint", "dir", b.Dir, "version", b.Version, "sandbox", plan.Sandbox.Name,
		"profile", profileName(plan), "prepared_in", time.Since(start))
	ro := &sandboxRunOpts{
		// A blueprint's workspace is the agent's state: it outlives the run.
		name: plan.Sandbox.Name, workdir: workdir, tty: o.tty, noTTY: o.noTTY, keep: true,
		stopTimeout: o.stopTimeout, pol: b.Policy, env: env,
		detach: o.detach, superviseFd: o.superviseFd, blueprint: b.Dir, version: b.Version,
		gpus: o.gpus, gpuDefault: blueprintGPUs(b, popts.GPUErr, app),
		tools: o.tools,
	}
	if len(src) > 0 {
		ro.blueprint = src[0]
	}
	ro.inference = applyInference(app, b, plan)
	runs := runStore(app)
	// A clear refusal naming the run that holds the name; the sandbox
	// directory's flock (supervisor.lockDir) is what makes two applies at
	// once exclusive, and a loser's error names the winner below.
	var iu *state.InUseError
	if err := runs.CheckFree(plan.Sandbox.Name, ""); errors.As(err, &iu) {
		return Refused(err)
	}
	if o.detach && o.superviseFd == 0 {
		// The launcher: the detached supervisor it starts writes the run.
		return runSandbox(cmd.Context(), app, ro, plan.Sandbox.Command)
	}
	rec := &state.Run{
		Kind: "apply", Sandbox: plan.Sandbox.Name, Blueprint: ro.blueprint, Version: b.Version,
		Digest: o.source.Digest, Signer: o.source.Signer, Profile: profileName(plan),
		PolicyGeneration: 1, Pid: os.Getpid(), Detached: o.superviseFd != 0, Outcome: state.OutcomeStarting,
		Pin: o.source.Pin,
	}
	rec.UID, rec.User = os.Getuid(), userName()
	rec.PidStart, _ = supervisor.ProcessStart(rec.Pid)
	if rec.Digest == "" && !strings.HasPrefix(b.Dir, "embedded:") {
		if d, err := state.TreeDigest(b.Dir); err == nil {
			rec.Digest = d
		}
	}
	if err := runs.Create(rec); err != nil {
		return err
	}
	return runTracked(cmd.Context(), app, runs, rec.ID, ro, plan.Sandbox.Command)
}

// runStore is $NEMOCLAW_HOME's run records.
func runStore(app *App) *state.Runs {
	return &state.Runs{Dir: state.RunsDir(app.Home), Alive: supervisor.ProcessAlive}
}

// userName is the invoking user's name, or "" if it has none.
func userName() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return ""
}

func profileName(p *state.Plan) string {
	if p.Inference == nil {
		return ""
	}
	return p.Inference.Profile
}
