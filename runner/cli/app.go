// Package cli is nemoclaw's command-line interface: the cobra commands and
// their wiring onto the runner libraries. It is the only package that imports
// cobra; every command turns a user's words into a library Config.
package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"

	"github.com/spf13/cobra"

	"github.com/nemoclaw/nemoclaw/runner/inference"
)

// Exit codes, documented in the README and in `nemoclaw --help`.
const (
	ExitOK      = 0 // success
	ExitError   = 1 // any error
	ExitUsage   = 2 // bad flags or arguments
	ExitRefused = 3 // refused by verification or policy
)

// App is what every command gets: where state lives, where to print and log.
type App struct {
	// Logger receives structured logs; --log-level and --log-format shape it.
	Logger *slog.Logger
	// Home is $NEMOCLAW_HOME (default ~/.nemoclaw).
	Home string
	// Out and Err are the command's stdout and stderr.
	Out, Err io.Writer
	// In is the command's stdin.
	In io.Reader
	// Version is the build's version string.
	Version string
	// InferenceHost starts what gives inference routes their backends
	// (nil: the plugin host, runner/inference NewHost); tests put an
	// in-process provider here. pins are the routes' plugin checksums.
	InferenceHost func(app *App, pins map[string]string) (inference.Provider, func() error, error)

	// args are the words Execute was given (os.Args[1:] in main): a command
	// that needs nemoclaw-dist hands them to it unchanged.
	args []string
	// helpErr is a failure of a help function, which cobra gives no way to
	// return (`nemoclaw help key` without nemoclaw-dist).
	helpErr error
	// exits is Options.Exits.
	exits bool

	// logLevel and logFormat are --log-level and --log-format, for the
	// loggers commands make (a supervisor's, to its log file).
	logLevel  slog.Level
	logFormat string
	// logOut is where Logger writes; it turns "\n" into "\r\n" while a
	// sandbox's TTY holds the terminal in raw mode.
	logOut *termWriter
}

// termWriter writes through to w, translating line ends while raw is set.
type termWriter struct {
	w   io.Writer
	raw atomic.Bool
}

// Write implements io.Writer.
func (t *termWriter) Write(p []byte) (int, error) {
	if !t.raw.Load() {
		return t.w.Write(p)
	}
	if _, err := t.w.Write(bytes.ReplaceAll(p, []byte("\n"), []byte("\r\n"))); err != nil {
		return 0, err
	}
	return len(p), nil
}

// rawTerminal tells the logger whether the terminal is in raw mode.
func (a *App) rawTerminal(on bool) {
	if a.logOut != nil {
		a.logOut.raw.Store(on)
	}
}

// exitError carries an exit code through cobra to main.
type exitError struct {
	code int
	err  error
}

// Error implements error.
func (e *exitError) Error() string { return e.err.Error() }

// Unwrap returns the underlying error.
func (e *exitError) Unwrap() error { return e.err }

// Refused marks err as a refusal by verification or policy (exit code 3).
func Refused(err error) error {
	if err == nil {
		return nil
	}
	return &exitError{code: ExitRefused, err: err}
}

// Usage marks err as a usage error (exit code 2).
func Usage(err error) error {
	if err == nil {
		return nil
	}
	return &exitError{code: ExitUsage, err: err}
}

// WithExitCode marks err with an explicit exit code (e.g. the agent's own).
func WithExitCode(code int, err error) error {
	return &exitError{code: code, err: err}
}

// ExitCode maps an error returned by Execute to the process exit code.
func ExitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return ExitError
}

// defaultHome resolves $NEMOCLAW_HOME, falling back to ~/.nemoclaw.
func defaultHome() string {
	if h := os.Getenv("NEMOCLAW_HOME"); h != "" {
		return h
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".nemoclaw")
	}
	return ".nemoclaw"
}

// registry of command constructors, filled from init() in each command file so
// that concerns can add commands without editing the root.
var commandCtors []func(app *App) *cobra.Command

// register adds a top-level command constructor.
func register(ctor func(app *App) *cobra.Command) {
	commandCtors = append(commandCtors, ctor)
}

// subcommands of shared parents (blueprint, policy) are registered the same way.
var (
	blueprintCtors []func(app *App) *cobra.Command
	policyCtors    []func(app *App) *cobra.Command
)

// registerBlueprint adds a `nemoclaw blueprint` subcommand.
func registerBlueprint(ctor func(app *App) *cobra.Command) {
	blueprintCtors = append(blueprintCtors, ctor)
}

// Register adds a top-level command to every tree NewRoot builds. Packages
// outside cli (runner/cli/distcli) call it from init(); a command registered
// under the name of a delegating stub replaces the stub.
func Register(ctor func(app *App) *cobra.Command) { register(ctor) }

// RegisterBlueprint adds a `nemoclaw blueprint` subcommand to every tree
// NewRoot builds, replacing the delegating stub of the same name.
func RegisterBlueprint(ctor func(app *App) *cobra.Command) { registerBlueprint(ctor) }

// registerPolicy adds a `nemoclaw policy` subcommand.
func registerPolicy(ctor func(app *App) *cobra.Command) {
	policyCtors = append(policyCtors, ctor)
}

// printf writes to w and ignores the error: a closed stdout is not worth
// failing a command over once its work is done.
func printf(w io.Writer, format string, a ...any) {
	_, _ = fmt.Fprintf(w, format, a...)
}
