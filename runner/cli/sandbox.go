package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/nemoclaw/nemoclaw/runner/blueprint"
	"github.com/nemoclaw/nemoclaw/runner/gpu"
	"github.com/nemoclaw/nemoclaw/runner/policy"
	"github.com/nemoclaw/nemoclaw/runner/sandbox"
	"github.com/nemoclaw/nemoclaw/runner/supervisor"
)

func init() { register(func(app *App) *cobra.Command { return newSandboxCmd(app) }) }

// sandboxRunOpts are the flags of `nemoclaw sandbox run`.
type sandboxRunOpts struct {
	policyFile, workdir, name string
	tty, noTTY, keep          bool
	memory, cpus              string
	pids                      int
	// stopTimeout is sandbox.Config.StopTimeout (0: its default).
	stopTimeout time.Duration
	// pol and env are set by `blueprint apply`: the blueprint's effective
	// policy (instead of --policy) and the agent's extra environment;
	// blueprint and version are recorded for `sandbox list`.
	pol                *policy.Policy
	env                []string
	blueprint, version string
	// approvals and approvalTimeout are --approvals and --approval-timeout.
	approvals       bool
	approvalTimeout time.Duration
	// detach is --detach; superviseFd, the hidden --supervise-fd, marks
	// the detached supervisor that --detach re-executes (detach.go).
	detach      bool
	superviseFd int
	// tools is a read-only tools tree bound at sandbox.ToolsPath.
	tools string
	// onRunning, if set, is called once the agent runs (before a
	// detached supervisor tells its launcher): apply's run record.
	onRunning func()
	// gpus are --gpus and --gpus-shared; gpuDefault is the blueprint's
	// gpu: (apply), used without --gpus.
	gpus       gpuFlags
	gpuDefault gpu.Request
	// args is the command line a detach re-executes (nil: the one
	// nemoclaw was given); quiet leaves the detached sandbox's name
	// unprinted (a rollback prints its run instead).
	args  []string
	quiet bool
	// inference is the blueprint's routes (apply); its provider is
	// started by the process that runs the supervisor.
	inference *supervisor.InferenceConfig
}

func newSandboxCmd(app *App) *cobra.Command {
	sb := &cobra.Command{
		Use:   "sandbox",
		Short: "Run, list, follow, stop, start and destroy sandboxes",
		Args:  noArgs,
		RunE:  groupHelp,
	}
	sb.AddCommand(newSandboxRunCmd(app))
	for _, c := range sandboxCtors {
		sb.AddCommand(c(app))
	}
	return sb
}

func newSandboxRunCmd(app *App) *cobra.Command {
	var o sandboxRunOpts
	cmd := &cobra.Command{
		Use:   "run [flags] -- CMD [ARGS...]",
		Short: "Run a command in a sandbox without a blueprint",
		Long: `Run starts CMD inside nemoclaw's isolation stack — namespaces (user when not
root, mount, pid, net, ipc, uts), a fresh root with /sandbox as the workspace,
Landlock, seccomp, no capabilities and resource limits — under the policy
given with --policy, or the embedded default blueprint's policy.

The exit code is CMD's own (128+N when signal N killed it); a CMD that
cannot be run exits 127 when it is not found and 126 when it cannot be
executed, as from a shell. A failed setup step prints
"sandbox: <step>: <cause>" and exits 1, or 3 when the policy refused to
start (for example landlock.compatibility: hard_requirement on a
kernel without the needed Landlock ABI).`,
		Example: `  nemoclaw sandbox run -- bash
  nemoclaw sandbox run --policy my-policy.yaml --workdir . -- python3 agent.py
  nemoclaw sandbox run --memory 1Gi --pids 128 -- make test`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return Usage(errors.New("no command given: put it after --, e.g. `nemoclaw sandbox run -- bash`"))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			// 0 is also "not given" to loadRunPolicy: refused here, where
			// the two differ, rather than silently meaning the policy's.
			if cmd.Flags().Changed("pids") && o.pids < 1 {
				return Usage(fmt.Errorf("--pids %d: want at least 1, the agent itself (leave --pids out for the policy's limit)", o.pids))
			}
			stopTimeoutGiven(cmd, &o.stopTimeout)
			return runSandbox(cmd.Context(), app, &o, args)
		},
	}
	cmd.Flags().SetInterspersed(false)
	f := cmd.Flags()
	f.StringVar(&o.policyFile, "policy", "", "policy YAML file (default: the embedded default blueprint's policy)")
	f.StringVar(&o.workdir, "workdir", "", "host directory mounted at /sandbox, where the agent acts as its owner; its files keep their owners (default: a private in-memory workspace that ends with the run; see --keep)")
	f.StringVar(&o.name, "name", "", "sandbox name and hostname, one running sandbox each: its audit log, control socket and --keep workspace are under $NEMOCLAW_HOME/sandboxes/<name> (default: sb-<random>)")
	f.BoolVar(&o.tty, "tty", false, "run on a pseudo-terminal (default: when stdin and stdout are terminals); input that is not a terminal reaches the agent as typed, then as ^D when it ends")
	f.BoolVar(&o.noTTY, "no-tty", false, "never allocate a pseudo-terminal")
	addStopTimeoutFlag(f, &o.stopTimeout)
	f.BoolVar(&o.keep, "keep", false, "put the workspace on disk at $NEMOCLAW_HOME/sandboxes/<name>/workspace and keep it after the run")
	f.StringVar(&o.memory, "memory", "", "memory limit, e.g. 512Mi (overrides the policy's resources.memory)")
	f.IntVar(&o.pids, "pids", 0, "process limit (overrides resources.pids)")
	f.StringVar(&o.cpus, "cpus", "", "CPU limit, e.g. 1.5 or 500m (overrides resources.cpu; needs cgroup v2)")
	addApprovalFlags(f, &o)
	addDetachFlags(f, &o.detach, &o.superviseFd)
	addGPUFlags(f, &o.gpus)
	return cmd
}

// loadRunPolicy reads --policy or the default blueprint's policy and applies
// the resource overrides.
func loadRunPolicy(o *sandboxRunOpts) (*policy.Policy, error) {
	var pol *policy.Policy
	var err error
	switch {
	case o.pol != nil:
		pol = o.pol
	case o.policyFile != "":
		pol, err = policy.LoadFile(o.policyFile)
	default:
		pol, err = blueprint.DefaultPolicy()
	}
	if err != nil {
		return nil, err
	}
	if o.memory != "" || o.pids != 0 || o.cpus != "" {
		if o.pol != nil {
			pol = policy.Clone(pol) // the caller's policy stays as it was
		}
		if pol.Resources == nil {
			pol.Resources = &policy.Resources{}
		}
		if o.memory != "" {
			if _, err := policy.ParseBytes(o.memory); err != nil {
				return nil, Usage(fmt.Errorf("--memory: %w", err))
			}
			pol.Resources.Memory = o.memory
		}
		if o.pids < 0 {
			return nil, Usage(fmt.Errorf("--pids %d: want a positive number", o.pids))
		}
		if o.pids > 0 {
			pol.Resources.Pids = o.pids
		}
		if o.cpus != "" {
			if _, err := policy.ParseCPU(o.cpus); err != nil {
				return nil, Usage(fmt.Errorf("--cpus: %w", err))
			}
			pol.Resources.CPU = o.cpus
		}
	}
	return pol, nil
}

func runSandbox(ctx context.Context, app *App, o *sandboxRunOpts, args []string) (rerr error) {
	if o.tty && o.noTTY {
		return Usage(errors.New("--tty and --no-tty exclude each other"))
	}
	if o.detach && o.superviseFd == 0 {
		args := o.args
		if args == nil {
			args = app.args
		}
		return runDetached(app, o, args)
	}
	var notify *supervisor.Notifier
	if o.superviseFd != 0 {
		notify = supervisor.NewNotifier(o.superviseFd)
		defer func() { notify.Failed(rerr) }() // a no-op once the agent runs
	}
	// The sandbox's life is its agent's: SIGINT, SIGTERM, SIGHUP and
	// SIGQUIT go to the agent rather than ending the run, and SIGWINCH
	// resizes its terminal. Caught from here on, a signal that races the
	// start is held until the agent runs, not lost.
	sigs, err := sandbox.CatchSignals()
	if err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	defer sigs.Stop()
	// Start-up work that needs no policy runs on the other core while
	// this one loads the policy: the cgroup probe, and the sandbox's
	// directory and egress CA (mostly made already by warmSandboxLaunch).
	sandbox.Warm()
	if o.name == "" {
		o.name = warmName()
	}
	res := takeReservation(app, o.name)
	pol, err := loadRunPolicy(o)
	if err != nil {
		res.Release()
		return err
	}
	gpus, err := o.gpus.request(o.gpuDefault)
	if err != nil {
		res.Release()
		return err
	}
	stdin, _ := app.In.(*os.File)
	stdout, _ := app.Out.(*os.File)
	isTerm := stdin != nil && term.IsTerminal(int(stdin.Fd()))
	useTTY := notify == nil && (o.tty || (!o.noTTY && isTerm && stdout != nil && term.IsTerminal(int(stdout.Fd()))))
	logger, logFile := supervisorLogger(app, o.name, notify == nil && !isTerminal(app.Err))
	defer logFile.Close()
	cfg := supervisor.Config{
		Name: o.name, Home: app.Home, Policy: pol, Command: args, Env: o.env,
		Workdir: o.workdir, KeepWorkspace: o.keep, TTY: useTTY, StopTimeout: o.stopTimeout,
		Stdin: app.In, Stdout: app.Out, Stderr: app.Err,
		Approvals: o.approvals, ApprovalTimeout: o.approvalTimeout,
		Blueprint: o.blueprint, BlueprintVersion: o.version,
		Logger: logger, Reservation: res, GPUs: gpus, GPU: o.gpus.config(), Inference: o.inference, Tools: o.tools,
	}
	if o.inference != nil && len(o.inference.Routes) > 0 {
		stop := startInference(app, o.inference)
		defer func() { _ = stop() }()
	}
	if notify != nil {
		cfg.Detached, cfg.Stdin, cfg.Stdout, cfg.Stderr = true, nil, nil, nil
	}
	if useTTY && isTerm {
		if w, h, err := term.GetSize(int(stdin.Fd())); err == nil {
			cfg.WindowSize = &sandbox.WindowSize{Rows: uint16(h), Cols: uint16(w)}
		}
	}
	rc := supervisor.RunConfig{Config: cfg, Signals: sigs, Notifier: notify, OnRunning: o.onRunning, Exits: app.exits}
	if isTerm && notify == nil {
		rc.Terminal = stdin
	}
	rc.Prepare = func(sup *supervisor.Supervisor) (func(), error) {
		if notify == nil && isTerminal(app.Err) {
			printBanner(app, &cfg, sup.Dir())
		}
		if !useTTY || !isTerm {
			return nil, nil
		}
		old, err := term.MakeRaw(int(stdin.Fd()))
		if err != nil {
			return nil, fmt.Errorf("sandbox: tty: raw mode: %w", err)
		}
		app.rawTerminal(true)
		return func() {
			app.rawTerminal(false)
			_ = term.Restore(int(stdin.Fd()), old)
		}, nil
	}
	code, err := supervisor.Run(ctx, rc)
	var re *supervisor.RefusedError
	var se *supervisor.StartError
	switch {
	case errors.As(err, &re):
		return Refused(err)
	case errors.As(err, &se):
		return sandboxError(se.Err)
	case err != nil:
		return err
	}
	return ExitStatus(code)
}

// addStopTimeoutFlag adds --stop-timeout, sandbox.Config.StopTimeout, to a
// command that starts a sandbox.
func addStopTimeoutFlag(f *pflag.FlagSet, d *time.Duration) {
	f.DurationVar(d, "stop-timeout", sandbox.DefaultStopTimeout, "how long the agent has to exit after a SIGTERM (from kill, a service manager) before everything in its sandbox is killed; 0: at once, negative: no limit")
}

// stopTimeoutGiven makes an explicit --stop-timeout 0 mean "at once": 0 is
// Config.StopTimeout's default.
func stopTimeoutGiven(cmd *cobra.Command, d *time.Duration) {
	if cmd.Flags().Changed("stop-timeout") && *d == 0 {
		*d = time.Nanosecond
	}
}

// launchWords reports whether group and cmd are a command that starts a
// sandbox: `sandbox run`, `sandbox start`, `blueprint apply`.
func launchWords(group, cmd string) bool {
	return (group == "sandbox" && (cmd == "run" || cmd == "start")) || (group == "blueprint" && cmd == "apply")
}

// launchesSandbox reports whether args will most likely start a sandbox
// (launchWords), nearly the same test as nsinit.c's constructor (which
// leaves out `sandbox start`: a start is detached, its start-up time no
// one waits on): a wrong guess only costs a little background work.
func launchesSandbox(args []string) bool {
	if len(args) > 0 && strings.HasPrefix(args[0], "__complete") {
		return false // a shell completing the words of one
	}
	for i := 0; i+1 < len(args) && args[i] != "--"; i++ {
		if launchWords(args[i], args[i+1]) {
			return true
		}
	}
	return false
}

// sandboxError adds what the user can do and maps refusals to exit code 3.
func sandboxError(err error) error {
	var se *sandbox.StepError
	if errors.As(err, &se) && se.Hint != "" {
		err = fmt.Errorf("%w\n  what to do: %s", err, se.Hint)
	}
	if sandbox.IsRefused(err) {
		return Refused(err)
	}
	if code := sandbox.ExecStatus(err); code != 0 {
		return WithExitCode(code, err)
	}
	return err
}
