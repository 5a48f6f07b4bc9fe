package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/nemoclaw/nemoclaw/runner/cli/distcli/commands"
	"github.com/nemoclaw/nemoclaw/runner/version"
)

// The distribution commands (push, pull, sign, verify, keys, registry
// logins) and `blueprint apply REF` need the registry and signing code,
// whose dependencies (sigstore-go, oras-go, grpc, protobuf) cost every
// process several milliseconds of package initialisation. They live in
// runner/cli/distcli, linked only into nemoclaw-dist. The nemoclaw that
// launches sandboxes shows them as stubs with the same names and short
// descriptions, which replace the process with nemoclaw-dist and the same
// command line: same output, exit codes, help, streams and terminal.

// HelperName is the executable holding the distribution commands. It is
// looked for next to the running executable only: never on $PATH, where
// for a nemoclaw run as root any directory earlier on the path would be
// an exec hijack.
const HelperName = "nemoclaw-dist"

// DelegatedAnnotation marks a stub that hands its command line to
// nemoclaw-dist (its value is HelperName); no command of a tree with
// runner/cli/distcli linked carries it.
const DelegatedAnnotation = "nemoclaw/delegated-to"

// delegatedEnv is set in nemoclaw-dist's environment to the identity
// (runner/version.Identity) of the nemoclaw that handed it the command line:
// the helper refuses to run when its own differs (checkHandshake), and a
// nemoclaw that sees it was started as the helper and lacks the commands,
// and must not exec again (a loop).
const delegatedEnv = "NEMOCLAW_DELEGATED"

// checkHandshake refuses to run a command line handed over by a nemoclaw of
// another build: the stubs, flags and state formats of the two executables
// must match. The identity travels in the environment of the exec, so the
// check costs no extra process start (executing `nemoclaw-dist --handshake`
// first would cost a whole start of the helper, about 15 ms; reading its
// Go build information, 0.1 ms, identifies no build made with -trimpath
// outside a git checkout). from is the environment's value, "" when this
// process was started by a user.
func checkHandshake(from string) error {
	if from == "" {
		return nil
	}
	if own := version.Identity(); from != own {
		exe, _ := executable()
		return fmt.Errorf("refusing to run a command handed over by a nemoclaw of another build: %s (%s) is %q, the nemoclaw that started it is %q; the two executables must come from one build: reinstall both together ('make build' builds nemoclaw and %s into bin/, or run 'go install github.com/nemoclaw/nemoclaw/cmd/...@latest')",
			filepath.Base(exe), exe, own, from, HelperName)
	}
	return nil
}

// Delegation hooks; tests replace them so that no test execs.
var (
	executable = os.Executable
	execve     = syscall.Exec
)

// addDelegatingStubs adds a stub for every command of nemoclaw-dist's table
// (runner/cli/distcli/commands, from which distcli builds the real ones)
// that no registered constructor provided.
func addDelegatingStubs(app *App, root, bp *cobra.Command) {
	for _, d := range commands.All {
		parent := root
		if d.Parent == "blueprint" {
			parent = bp
		}
		name := strings.Fields(d.Use)[0]
		if hasSubcommand(parent, name) {
			continue
		}
		parent.AddCommand(newDelegatingStub(app, d.Use, d.Short))
	}
}

func hasSubcommand(parent *cobra.Command, name string) bool {
	for _, c := range parent.Commands() {
		if c.Name() == name {
			return true
		}
	}
	return false
}

// newDelegatingStub is a command that runs nemoclaw-dist with the whole
// command line: flags are not parsed, so --help, flags and arguments reach
// the real command unchanged; `help CMD` and shell completion delegate too.
func newDelegatingStub(app *App, use, short string) *cobra.Command {
	c := &cobra.Command{
		Use:                use,
		Short:              short,
		Long:               short + ".\n\nThis command runs in " + HelperName + ", installed next to nemoclaw.",
		DisableFlagParsing: true,
		Annotations:        map[string]string{DelegatedAnnotation: HelperName},
		RunE: func(cmd *cobra.Command, args []string) error {
			return app.delegate(commandName(cmd))
		},
		ValidArgsFunction: func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
			_ = app.delegate(commandName(cmd)) // returns only when it could not exec
			return nil, cobra.ShellCompDirectiveError
		},
	}
	c.SetHelpFunc(func(cmd *cobra.Command, args []string) {
		if err := app.delegate(commandName(cmd)); app.helpErr == nil {
			app.helpErr = err
		}
	})
	return c
}

// commandName is cmd's path without the root's name, e.g. "blueprint pull".
func commandName(cmd *cobra.Command) string {
	return strings.TrimPrefix(cmd.CommandPath(), cmd.Root().Name()+" ")
}

// delegate replaces this process with nemoclaw-dist running the same
// command line, environment, streams and terminal. It returns only on
// failure; name says which command needed the helper.
func (a *App) delegate(name string) error {
	if os.Getenv(delegatedEnv) != "" {
		exe, _ := executable()
		return fmt.Errorf("%s: %s (%s) lacks this command, so it is not a real %s; reinstall both: 'make build' builds nemoclaw and %s into bin/, or run 'go install github.com/nemoclaw/nemoclaw/cmd/...@latest'",
			name, HelperName, exe, HelperName, HelperName)
	}
	helper, err := findHelper(name)
	if err != nil {
		return err
	}
	argv := append([]string{helper}, a.args...)
	env := []string{delegatedEnv + "=" + version.Identity()}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, delegatedEnv+"=") { // Getenv reads the first
			env = append(env, kv)
		}
	}
	return fmt.Errorf("%s: exec %s: %w", name, helper, execve(helper, argv, env))
}

// findHelper returns nemoclaw-dist's path: next to the running executable
// (symlinks resolved), and nowhere else.
func findHelper(name string) (string, error) {
	where := "next to this executable"
	if exe, err := executable(); err == nil {
		if real, err := filepath.EvalSymlinks(exe); err == nil {
			exe = real
		}
		dir := filepath.Dir(exe)
		where = dir + " (next to " + filepath.Base(exe) + ")"
		if p := filepath.Join(dir, HelperName); isExecutableFile(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s needs %s, which holds the registry and signing commands, in %s (it is never looked for on $PATH); install both executables in one directory: 'make build' builds nemoclaw and %s into bin/, or run 'go install github.com/nemoclaw/nemoclaw/cmd/...@latest'",
		name, HelperName, where, HelperName)
}

// isExecutableFile reports whether p is a regular file someone may execute.
func isExecutableFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0
}
