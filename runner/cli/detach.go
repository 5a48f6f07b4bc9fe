package cli

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

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
			return slices.Concat(args[:i+2], []string{"--" + superviseFlag + "=3"}, args[i+2:]), nil
		}
	}
	return nil, errors.New("--detach: no `sandbox run`, `sandbox start` or `blueprint apply` in the command line")
}

// runDetached starts this command line again as a supervisor in a session
// of its own (setsid: no terminal, no SIGHUP when this one closes), its
// standard streams on /dev/null until it has its log file, and returns once
// it reports that the agent runs, printing the sandbox's name.
func runDetached(app *App, o *sandboxRunOpts) error {
	if o.tty {
		return Usage(errors.New("--detach and --tty exclude each other: a detached agent has no terminal (its output goes to `nemoclaw sandbox logs NAME`)"))
	}
	discardWarmFiles() // the supervisor makes its own
	args, err := superviseArgs(app.args)
	if err != nil {
		return Usage(err)
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("detach: find nemoclaw's executable: %w", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("detach: %w", err)
	}
	defer r.Close()
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		w.Close()
		return fmt.Errorf("detach: %w", err)
	}
	defer null.Close()
	cmd := exec.Command(exe, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = null, null, null
	cmd.ExtraFiles = []*os.File{w} // fd 3
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	w.Close()
	if err != nil {
		return fmt.Errorf("detach: start the supervisor: %w", err)
	}
	line, _ := bufio.NewReader(r).ReadString('\n')
	kind, msg, _ := strings.Cut(strings.TrimSuffix(line, "\n"), "\t")
	if kind == "ok" {
		_ = cmd.Process.Release() // it lives on, reparented
		printf(app.Out, "%s\n", msg)
		return nil
	}
	werr := cmd.Wait()
	code := cmd.ProcessState.ExitCode()
	if kind == "err" {
		msg = strings.ReplaceAll(msg, "\\n", "\n")
		if code <= 0 {
			code = ExitError
		}
		return WithExitCode(code, errors.New(msg))
	}
	return fmt.Errorf("detach: the supervisor ended (%v) before the agent ran; its log, if it made one, is under %s", werr, filepath.Join(app.Home, "sandboxes"))
}

// detachNotifier is the detached supervisor's end of runDetached's pipe.
type detachNotifier struct {
	f    *os.File
	done bool
}

func newDetachNotifier(fd int) *detachNotifier {
	return &detachNotifier{f: os.NewFile(uintptr(fd), "supervise-fd")}
}

// logTo points the process's stdout and stderr at the sandbox's log file,
// so that whatever the Go runtime or a library prints lands there.
func (n *detachNotifier) logTo(dir string) {
	f, err := os.OpenFile(filepath.Join(dir, supervisor.LogFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return
	}
	defer f.Close()
	_ = unix.Dup3(int(f.Fd()), 1, 0)
	_ = unix.Dup3(int(f.Fd()), 2, 0)
}

// running tells the launcher that the agent runs.
func (n *detachNotifier) running(name string) {
	n.send("ok\t" + name)
}

// failed tells the launcher why the agent does not run, err (the error
// the command returns), if running was not sent.
func (n *detachNotifier) failed(err error) {
	if err == nil {
		err = errors.New("the detached supervisor ended before the agent ran")
	}
	n.send("err\t" + strings.ReplaceAll(err.Error(), "\n", "\\n"))
}

func (n *detachNotifier) send(line string) {
	if n.done {
		return
	}
	n.done = true
	_, _ = io.WriteString(n.f, line+"\n")
	n.f.Close()
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
	printf(app.Err, "nemoclaw: sandbox %s\n  workspace: %s\n  egress:    %s\n  approve:   nemoclaw policy approvals %s  (%s)\n  log:       %s\n",
		cfg.Name, ws, egressLine, cfg.Name, decide, filepath.Join(dir, supervisor.LogFile))
}
