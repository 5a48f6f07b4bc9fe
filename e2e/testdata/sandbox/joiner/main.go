// Command joiner starts a sandbox as `nemoclaw sandbox run` does (the
// default blueprint's policy, the library's defaults) with an agent that
// only waits, then runs its arguments in it through Sandbox.Exec, the
// path of `nemoclaw sandbox exec`: the e2e suite runs the escape suite
// through it (e2e/sandbox_join_test.go). stdin, stdout and stderr go to
// the joined process, its exit status is this command's.
//
//	joiner -workdir DIR -home DIR [-tty] -- CMD [ARGS...]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/nemoclaw/nemoclaw/runner/blueprint"
	"github.com/nemoclaw/nemoclaw/runner/sandbox"
)

func main() {
	sandbox.MaybeInit()
	workdir := flag.String("workdir", "", "the workspace")
	home := flag.String("home", "", "$NEMOCLAW_HOME")
	tty := flag.Bool("tty", false, "run the command on a pseudo-terminal (24x80)")
	flag.Parse()
	code, err := run(*workdir, *home, *tty, flag.Args())
	if err != nil {
		fmt.Fprintln(os.Stderr, "joiner:", err)
		if c := sandbox.ExecStatus(err); c != 0 {
			os.Exit(c)
		}
		os.Exit(1)
	}
	os.Exit(code)
}

func run(workdir, home string, tty bool, argv []string) (int, error) {
	pol, err := blueprint.DefaultPolicy()
	if err != nil {
		return 0, err
	}
	sb, err := sandbox.Start(context.Background(), sandbox.Config{
		Workdir: workdir, Home: home, Policy: pol, Command: []string{"sleep", "3600"},
	})
	if err != nil {
		return 0, err
	}
	defer sb.Close()
	cfg := sandbox.ExecConfig{Command: argv, Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}
	if tty {
		cfg.TTY, cfg.WindowSize = true, &sandbox.WindowSize{Rows: 24, Cols: 80}
	}
	p, err := sb.Exec(context.Background(), cfg)
	if err != nil {
		return 0, err
	}
	return p.Wait()
}
