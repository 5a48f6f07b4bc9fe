package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/nemoclaw/nemoclaw/runner/supervisor"
)

// superviseFlag is the hidden flag with which --detach re-executes
// nemoclaw as the sandbox's supervisor: its value is the descriptor on
// which the supervisor reports "the agent runs" (or why it does not).
const superviseFlag = "supervise-fd"

// addDetachFlags adds --detach and the hidden --supervise-fd.
func addDetachFlags(f *pflag.FlagSet, detach *bool, fd *int) {
	f.BoolVarP(detach, "detach", "d", false, "start the sandbox in the background and print its name once the agent runs; its supervisor outlives the terminal (see nemoclaw sandbox list, logs, stop)")
	f.IntVar(fd, superviseFlag, 0, "")
	_ = f.MarkHidden(superviseFlag)
}

// superviseArgs are the words that re-execute args as a detached
// supervisor: --supervise-fd=3 right after the subcommand (`sandbox run`,
// `blueprint apply`), where flags are parsed, whatever follows.
func superviseArgs(args []string) ([]string, error) {
	for i := 0; i+1 < len(args) && args[i] != "--"; i++ {
		if launchWords(args[i], args[i+1]) {
			return slices.Concat(args[:i+2], []string{"--" + superviseFlag + "=" + strconv.Itoa(supervisor.NotifyFd)}, args[i+2:]), nil
		}
	}
	return nil, errors.New("--detach: no `sandbox run`, `sandbox start` or `blueprint apply` in the command line")
}

// runDetached starts args (this command line) again as a supervisor
// detached from the terminal (supervisor.Detach) and returns once it
// reports that the agent runs, printing the sandbox's name unless o.quiet.
func runDetached(app *App, o *sandboxRunOpts, args []string) error {
	if o.tty {
		return Usage(errors.New("--detach and --tty exclude each other: a detached agent has no terminal (its output goes to `nemoclaw sandbox logs NAME`)"))
	}
	discardWarmFiles() // the supervisor makes its own
	sargs, err := superviseArgs(args)
	if err != nil {
		return Usage(err)
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("detach: find nemoclaw's executable: %w", err)
	}
	name, err := supervisor.Detach(supervisor.DetachConfig{
		Exe: exe, Args: sargs, Home: app.Home, Env: append(os.Environ(), "NEMOCLAW_HOME="+app.Home),
	})
	var de *supervisor.DetachError
	if errors.As(err, &de) {
		return WithExitCode(de.Code, errors.New(de.Msg))
	}
	if err != nil {
		return err
	}
	if !o.quiet {
		printf(app.Out, "%s\n", name)
	}
	return nil
}

// printBanner tells the operator, before the agent takes the terminal,
// what runs where and how to steer it: the supervisor's own log goes to a
// file from here on, never to the agent's screen.
func printBanner(app *App, cfg *supervisor.Config, dir string) {
	ws := "private, in memory (ends with the run; --keep or --workdir keep one)"
	switch {
	case cfg.Workdir != "":
		if abs, err := filepath.Abs(cfg.Workdir); err == nil {
			ws = abs
		} else {
			ws = cfg.Workdir
		}
	case cfg.KeepWorkspace:
		ws = filepath.Join(dir, "workspace")
	}
	var hosts []string
	for _, np := range cfg.Policy.NetworkPolicies {
		for _, ep := range np.Endpoints {
			for _, port := range ep.EffectivePorts() {
				hosts = append(hosts, ep.Host+":"+strconv.Itoa(port))
			}
		}
	}
	sort.Strings(hosts)
	hosts = slices.Compact(hosts)
	egressLine := "nothing allowed (default deny)"
	if len(hosts) > 0 {
		shown := hosts
		if len(shown) > 4 {
			shown = append(slices.Clone(shown[:4]), fmt.Sprintf("and %d more", len(hosts)-4))
		}
		egressLine = fmt.Sprintf("%d destinations allowed, the rest denied: %s", len(hosts), strings.Join(shown, ", "))
	}
	decide := "refused requests are listed for approval"
	if cfg.Approvals {
		decide = fmt.Sprintf("refused requests wait up to %s for approval", cfg.ApprovalTimeout)
	}
	printf(app.Err, "nemoclaw: sandbox %s\n  workspace: %s\n  egress:    %s\n  inference: %s\n  approve:   nemoclaw policy approvals %s  (%s)\n  log:       %s\n",
		cfg.Name, ws, egressLine, inferenceLine(cfg.Inference), cfg.Name, decide, filepath.Join(dir, supervisor.LogFile))
}

// inferenceLine is the banner's word on inference.local: the route in
// force, or why calls to it will fail.
func inferenceLine(ic *supervisor.InferenceConfig) string {
	if ic == nil || len(ic.Routes) == 0 {
		return "none: inference.local answers 503 (the blueprint has no inference profile)"
	}
	for _, r := range ic.Routes {
		if r.Profile != ic.Profile {
			continue
		}
		line := fmt.Sprintf("inference.local -> profile %s, plugin %s, model %s", r.Profile, r.Plugin, orDash(r.Config.Model))
		switch {
		case ic.Provider == nil && ic.Unavailable != "":
			line += " (unavailable: " + ic.Unavailable + ")"
		case ic.MissingCredential != "":
			line += " (" + ic.MissingCredential + " is not set: calls will be refused)"
		}
		return line
	}
	return "no route named " + ic.Profile
}
