package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/nemoclaw/nemoclaw/runner/sandbox"
	"github.com/nemoclaw/nemoclaw/runner/supervisor"
)

// connectShell is `sandbox connect`'s command: bash if the sandbox has
// it, else sh.
var connectShell = []string{"/bin/sh", "-c", "if command -v bash >/dev/null 2>&1; then exec bash -i; fi; exec sh -i"}

func newSandboxExecCmd(app *App) *cobra.Command {
	var o execOpts
	cmd := &cobra.Command{
		Use:   "exec NAME [flags] -- COMMAND [ARG...]",
		Short: "Run a command inside a running sandbox, with the agent's restrictions",
		Long: `Exec starts COMMAND in the running sandbox NAME (also a detached one): in
its namespaces, as its user, under the agent's Landlock rules, seccomp filter,
limits and egress policy; it can never hold more than the agent. stdin,
stdout and stderr work both ways and the command's exit status is exec's
(128+N when signal N ended it, 127 for a command not found, 126 for one not
executable). -t runs it on a new terminal inside the sandbox, relayed to
yours (in raw mode; resizes follow); the detach keys (ctrl-p ctrl-q,
--detach-keys) leave it running there. Without -t, Ctrl-C, SIGTERM and SIGHUP
are passed on to the command. If exec itself dies, the command is killed.`,
		Example: "  nemoclaw sandbox exec my-sandbox -- ls -la\n  echo hi | nemoclaw sandbox exec my-sandbox -- sh -c 'cat; exit 3'\n  nemoclaw sandbox exec -t my-sandbox -- top",
		Args: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() != 1 || len(args) < 2 {
				return Usage(errors.New("want NAME -- COMMAND [ARG...]"))
			}
			return nil
		},
		ValidArgsFunction: completeSandboxNames(app),
		RunE: func(cmd *cobra.Command, args []string) error {
			keys, err := supervisor.ParseDetachKeys(o.detachKeys)
			if err != nil {
				return Usage(err)
			}
			return execInSandbox(cmd.Context(), app, args[0], supervisor.ExecSpec{
				Command: args[1:], Env: o.env, Dir: o.workdir, TTY: o.tty,
			}, keys)
		},
	}
	addDetachKeysFlag(cmd, &o.detachKeys)
	cmd.Flags().BoolVarP(&o.tty, "tty", "t", false, "run the command on a terminal inside the sandbox, relayed to this one")
	cmd.Flags().StringArrayVar(&o.env, "env", nil, "add NAME=VALUE to the command's environment (repeatable)")
	cmd.Flags().StringVarP(&o.workdir, "workdir", "w", "", "working directory inside the sandbox (default "+sandbox.Workdir+")")
	return cmd
}

// execOpts are `sandbox exec`'s flags.
type execOpts struct {
	tty        bool
	env        []string
	workdir    string
	detachKeys string
}

// addDetachKeysFlag adds --detach-keys to connect and exec.
func addDetachKeysFlag(cmd *cobra.Command, keys *string) {
	cmd.Flags().StringVar(keys, "detach-keys", supervisor.DefaultDetachKeys, `with a terminal, the keys that detach from the process and leave it running: comma-separated, each a character or ctrl-X (X: a-z, @, [, \, ], ^, _); "" turns detaching off`)
}

func newSandboxConnectCmd(app *App) *cobra.Command {
	var detachKeys string
	cmd := &cobra.Command{
		Use:   "connect NAME",
		Short: "Open an interactive shell inside a running sandbox",
		Long: `Connect opens a shell (bash if the sandbox has it, else sh) on a terminal
inside the running sandbox NAME, with the agent's user and restrictions:
` + "`nemoclaw sandbox exec -t NAME -- bash`" + `. Exit the shell to leave it,
or type the detach keys (ctrl-p ctrl-q, as docker's; --detach-keys) to
leave it running in the sandbox.`,
		Example:           "  nemoclaw sandbox connect my-sandbox\n  nemoclaw sandbox connect --detach-keys ctrl-],q my-sandbox",
		Args:              argsRange(1, 1),
		ValidArgsFunction: completeSandboxNames(app),
		RunE: func(cmd *cobra.Command, args []string) error {
			keys, err := supervisor.ParseDetachKeys(detachKeys)
			if err != nil {
				return Usage(err)
			}
			return execInSandbox(cmd.Context(), app, args[0], supervisor.ExecSpec{Command: connectShell, TTY: true}, keys)
		},
	}
	addDetachKeysFlag(cmd, &detachKeys)
	return cmd
}

// joinsSandbox reports whether args are `sandbox exec` or `sandbox
// connect`, which catch SIGTERM themselves (to pass it on).
func joinsSandbox(args []string) bool {
	return len(args) > 1 && args[0] == "sandbox" && (args[1] == "exec" || args[1] == "connect")
}

// execInSandbox runs spec in sandbox name through its supervisor, on this
// process's streams, and returns the process's exit status. With a TTY on
// a terminal and detach keys, the keys typed are passed through a pipe
// that watches for them: typed, they leave the process running.
func execInSandbox(ctx context.Context, app *App, name string, spec supervisor.ExecSpec, detachKeys []byte) error {
	if err := checkSandboxName(name); err != nil {
		return err
	}
	var files [3]*os.File
	streams := []any{app.In, app.Out, app.Err}
	var copies []func()
	for i, s := range streams {
		f, wait, err := streamFile(s, i == 0)
		if err != nil {
			return fmt.Errorf("sandbox exec: %w", err)
		}
		files[i] = f
		if wait != nil {
			copies = append(copies, wait)
		}
	}
	stdin := files[0]
	isTerm := term.IsTerminal(int(stdin.Fd()))
	var keysW *os.File // the pipe the detach watcher writes the keys to
	if spec.TTY && isTerm && len(detachKeys) > 0 {
		r, w, err := os.Pipe()
		if err != nil {
			return fmt.Errorf("sandbox exec: %w", err)
		}
		files[0], keysW, spec.Detachable = r, w, true
		defer w.Close()
	}
	if spec.TTY && isTerm {
		if w, h, err := term.GetSize(int(stdin.Fd())); err == nil {
			spec.Rows, spec.Cols = uint16(h), uint16(w)
		}
	}
	// Caught before the start: a signal racing it is passed on, not lost.
	// Each signal costs os/signal a round trip to its thread: SIGWINCH
	// only where a size follows.
	sigs := make(chan os.Signal, 8)
	caught := []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT}
	if spec.TTY && isTerm {
		caught = append(caught, syscall.SIGWINCH)
	}
	signal.Notify(sigs, caught...)
	defer signal.Stop(sigs)
	// Raw before the start, as `sandbox run`: keys typed while it starts
	// reach the command, not this terminal's line editor.
	if spec.TTY && isTerm {
		old, err := term.MakeRaw(int(stdin.Fd()))
		if err != nil {
			return fmt.Errorf("sandbox exec: tty: raw mode: %w", err)
		}
		app.rawTerminal(true)
		defer func() {
			app.rawTerminal(false)
			_ = term.Restore(int(stdin.Fd()), old)
		}()
	}
	// closeOurs closes the pipe ends made for streams that are not files;
	// once the supervisor holds its copies, or never will.
	closeOurs := func() {
		for i, s := range streams {
			if f, _ := s.(*os.File); f != files[i] {
				files[i].Close()
			}
		}
	}
	c := supervisor.NewClient(app.Home, name)
	sess, err := c.Exec(ctx, spec, files[0], files[1], files[2])
	if err != nil {
		// The copies into app.Out and app.Err end before the error is
		// printed there.
		closeOurs()
		for _, wait := range copies {
			wait()
		}
		return execError(ctx, app, name, err)
	}
	defer sess.Close()
	closeOurs() // the supervisor holds its own copies now
	done := make(chan struct{})
	defer close(done)
	if keysW != nil {
		go func() {
			// The pipe stays open after a detach: its end must not reach
			// the supervisor before the detach does.
			if detached, _ := supervisor.CopyInput(keysW, stdin, detachKeys); detached {
				_ = sess.Detach()
				return
			}
			keysW.Close()
		}()
	}
	go func() {
		for {
			select {
			case <-done:
				return
			case s := <-sigs:
				if s == syscall.SIGWINCH {
					if spec.TTY && isTerm {
						if w, h, err := term.GetSize(int(stdin.Fd())); err == nil {
							_ = sess.Resize(uint16(h), uint16(w))
						}
					}
					continue
				}
				_ = sess.Signal(s.(syscall.Signal))
			}
		}
	}()
	code, err := sess.Wait()
	for _, wait := range copies {
		wait()
	}
	if errors.Is(err, supervisor.ErrDetached) {
		printf(app.Err, "\r\nnemoclaw: detached from sandbox %s; pid %d runs on (nemoclaw sandbox connect %s opens another shell)\r\n", name, sess.Pid, name)
		return nil
	}
	if err != nil {
		return fmt.Errorf("sandbox exec %s: %w", name, err)
	}
	return ExitStatus(code)
}

// execError explains a refused exec: the sandbox's state when no
// supervisor answers, the command's own 126/127 when it cannot run.
func execError(ctx context.Context, app *App, name string, err error) error {
	var xe *supervisor.ExecError
	if errors.As(err, &xe) {
		return WithExitCode(xe.Code, fmt.Errorf("sandbox exec %s: %w", name, err))
	}
	in, ierr := supervisor.Inspect(ctx, app.Home, name, statusTimeout)
	if ierr != nil {
		return ierr
	}
	if in.State != supervisor.StateRunning {
		return fmt.Errorf("sandbox exec %s: the sandbox is %s, not running: start it with `nemoclaw sandbox start %s`, then run the command", name, in.Summary(), name)
	}
	return controlErr(fmt.Errorf("sandbox exec %s: %w", name, err))
}

// streamFile returns s as a file to send to the supervisor: s itself when
// it is one, else a pipe copied to or from s (an in-process caller's
// buffer); wait waits for that copy to end.
func streamFile(s any, input bool) (*os.File, func(), error) {
	if f, ok := s.(*os.File); ok && f != nil {
		return f, nil, nil
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	if input {
		in, _ := s.(io.Reader)
		go func() {
			if in != nil {
				_, _ = io.Copy(w, in)
			}
			w.Close()
		}()
		return r, nil, nil
	}
	out, _ := s.(io.Writer)
	if out == nil {
		out = io.Discard
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(out, r)
		r.Close()
	}()
	return w, func() { <-done }, nil
}
