package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/nemoclaw/nemoclaw/runner/inference"
)

// Options configure Execute; zero values mean the process's own streams.
type Options struct {
	Args     []string
	Stdin    io.Reader
	Stdout   io.Writer
	Stderr   io.Writer
	Version  string
	LogLevel slog.Level
	// Exits says the process exits when Execute returns (Main): a command
	// may then leave to the exit what it would release for nothing, such
	// as a sandbox's served sockets.
	Exits bool
	// InferenceHost replaces the inference plugin host (App.InferenceHost).
	InferenceHost func(app *App, pins map[string]string) (inference.Provider, func() error, error)
}

// Main runs this process's command line and returns its exit code: what a
// main package calls, after sandbox.MaybeInit. SIGTERM cancels the context
// (a running sandbox forwards it to the agent instead).
func Main() int {
	args := os.Args[1:]
	ctx, stop := context.Background(), func() {}
	if !launchesSandbox(args) && !joinsSandbox(args) {
		// A sandbox run forwards SIGTERM to its agent instead (and
		// os/signal's set-up would slow its start); exec and connect
		// catch it themselves, to pass it on.
		ctx, stop = signal.NotifyContext(ctx, syscall.SIGTERM)
	}
	defer stop()
	return ExitCode(Execute(ctx, Options{Args: args, Exits: true}))
}

// Execute runs nemoclaw with opts and returns the error to map to an exit
// code with ExitCode. Errors are printed here, once, without a stack trace.
func Execute(ctx context.Context, opts Options) error {
	if opts.Stdin == nil {
		opts.Stdin = os.Stdin
	}
	if opts.Stdout == nil {
		opts.Stdout = os.Stdout
	}
	if opts.Stderr == nil {
		opts.Stderr = os.Stderr
	}
	if err := checkHandshake(os.Getenv(delegatedEnv)); err != nil {
		printf(opts.Stderr, "nemoclaw: %v\n", err)
		return err
	}
	app := &App{Home: defaultHome(), Out: opts.Stdout, Err: opts.Stderr, In: opts.Stdin, Version: opts.Version, args: opts.Args, exits: opts.Exits, InferenceHost: opts.InferenceHost}
	if launchesSandbox(opts.Args) {
		warmSandboxLaunch(app) // overlaps cobra's set-up and the policy load
		defer discardWarmFiles()
	}
	root := rootFor(app, opts.Args)
	root.SetArgs(opts.Args)
	root.SetIn(opts.Stdin)
	root.SetOut(opts.Stdout)
	root.SetErr(opts.Stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		err = app.helpErr
	}
	if err != nil {
		if ExitCode(err) == ExitOK {
			return nil
		}
		if !silent(err) {
			printf(opts.Stderr, "nemoclaw: %v\n", err)
		}
	}
	return err
}

// silentError is an exit status that has already been explained (e.g. the
// sandboxed agent's own exit code).
type silentError struct{ code int }

// Error implements error.
func (s *silentError) Error() string { return fmt.Sprintf("exit status %d", s.code) }

// ExitStatus returns an error that makes nemoclaw exit with code and print
// nothing more.
func ExitStatus(code int) error {
	if code == 0 {
		return nil
	}
	return &exitError{code: code, err: &silentError{code: code}}
}

func silent(err error) bool {
	var s *silentError
	return errors.As(err, &s)
}

// NewRoot builds the whole command tree for app. Commands that need the
// registry and signing code and are not linked into this executable are
// delegating stubs that hand the whole command line to nemoclaw-dist.
func NewRoot(app *App) *cobra.Command {
	root := newRootBase(app)
	bp := newGroup(app, "blueprint", "Validate, plan, apply and distribute blueprints", blueprintCtors)
	pol := newGroup(app, "policy", "Validate and show sandbox policies; change a running sandbox's network policy", policyCtors)
	root.AddCommand(bp, pol)
	for _, c := range commandCtors {
		root.AddCommand(c(app))
	}
	addDelegatingStubs(app, root, bp)
	return root
}

// newGroup is a command group with the subcommands ctors build.
func newGroup(app *App, use, short string, ctors []func(*App) *cobra.Command) *cobra.Command {
	g := &cobra.Command{Use: use, Short: short, Args: noArgs, RunE: groupHelp}
	for _, c := range ctors {
		g.AddCommand(c(app))
	}
	return g
}

// rootFor builds the tree Execute needs for args: `sandbox …` gets the
// root and its own branch only, which parse, help and fail exactly as in
// the whole tree (TestSandboxRootPruned); building the whole tree cost
// every sandbox start ~0.2 ms. Anything else gets NewRoot.
func rootFor(app *App, args []string) *cobra.Command {
	if len(args) > 0 && args[0] == "sandbox" {
		root := newRootBase(app)
		root.AddCommand(newSandboxCmd(app))
		return root
	}
	return NewRoot(app)
}

// newRootBase is the root command, its persistent flags and logger set-up,
// without subcommands.
func newRootBase(app *App) *cobra.Command {
	var logLevel, logFormat string
	root := &cobra.Command{
		Use:   "nemoclaw",
		Short: "Run AI agents in a kernel-enforced sandbox from signed, versioned blueprints",
		Long: `nemoclaw pulls versioned, signed blueprints (a sandbox, its security policy and
its inference setup) from OCI registries, verifies them and applies them: the
agent runs inside Landlock + seccomp + namespaces, and all of its network
egress passes a default-deny policy proxy.

Exit codes:
  0  success
  1  error
  2  usage error (bad flags or arguments)
  3  refused by verification or policy

Environment:
  NEMOCLAW_HOME   state directory (default ~/.nemoclaw)`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			lvl, err := parseLevel(logLevel)
			if err != nil {
				return Usage(err)
			}
			if logFormat != "text" && logFormat != "json" {
				return Usage(fmt.Errorf("--log-format %q: want text or json", logFormat))
			}
			app.logLevel, app.logFormat = lvl, logFormat
			app.logOut = &termWriter{w: app.Err}
			app.Logger = app.newLogger(app.logOut)
			return nil
		},
	}
	root.PersistentFlags().StringVar(&logLevel, "log-level", "warn", "log level: debug, info, warn or error")
	root.PersistentFlags().StringVar(&logFormat, "log-format", "text", "log format: text or json")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return Usage(fmt.Errorf("%w (see '%s --help')", err, c.CommandPath()))
	})
	// Loggers exist before PersistentPreRunE for commands built eagerly.
	app.Logger = slog.New(slog.NewTextHandler(app.Err, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return root
}

// newLogger returns a logger writing to w in the --log-format and at the
// --log-level the command line chose.
func (a *App) newLogger(w io.Writer) *slog.Logger {
	hopts := &slog.HandlerOptions{Level: a.logLevel}
	if a.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, hopts))
	}
	return slog.New(slog.NewTextHandler(w, hopts))
}

// groupHelp prints help for a command group run without a subcommand.
func groupHelp(cmd *cobra.Command, args []string) error {
	return cmd.Help()
}

// GroupHelp is the RunE of a command group: run without a subcommand, it
// prints the group's help.
func GroupHelp(cmd *cobra.Command, args []string) error { return groupHelp(cmd, args) }

// NoArgs is the Args of a command group: a positional argument is an unknown
// subcommand, reported as a usage error (exit code 2).
func NoArgs(cmd *cobra.Command, args []string) error { return noArgs(cmd, args) }

// ArgsRange returns a cobra.PositionalArgs that accepts min to max
// positional arguments (max < 0: no upper bound) and reports anything else
// as a usage error (exit code 2).
func ArgsRange(min, max int) cobra.PositionalArgs { return argsRange(min, max) }

// noArgs rejects positional arguments with a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return Usage(fmt.Errorf("unknown command %q for %q (see '%s --help')", args[0], cmd.CommandPath(), cmd.CommandPath()))
	}
	return nil
}

// argsRange returns a cobra.PositionalArgs that reports a usage error.
func argsRange(min, max int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < min || (max >= 0 && len(args) > max) {
			want := fmt.Sprintf("%d", min)
			switch {
			case max < 0:
				want = fmt.Sprintf("at least %d", min)
			case max != min:
				want = fmt.Sprintf("%d to %d", min, max)
			}
			return Usage(fmt.Errorf("%s takes %s argument(s), got %d (usage: %s)", cmd.CommandPath(), want, len(args), cmd.UseLine()))
		}
		return nil
	}
}

func parseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("--log-level %q: want debug, info, warn or error", s)
}
