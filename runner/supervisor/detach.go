package supervisor

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// A detached supervisor is the launcher's own executable started again
// (Detach) with a pipe on descriptor NotifyFd, in a session of its own; it
// reports on the pipe, through a Notifier, that its agent runs, or why it
// does not.

// NotifyFd is the descriptor on which a detached supervisor finds its
// launcher's pipe.
const NotifyFd = 3

// DetachConfig is the supervisor process Detach starts.
type DetachConfig struct {
	// Exe is the executable and Args its arguments (without argv[0]):
	// the command line of a process that runs a Supervisor and reports
	// through NewNotifier(NotifyFd).
	Exe  string
	Args []string
	// Env is its environment (nil: this process's).
	Env []string
	// Home is $NEMOCLAW_HOME, named when the supervisor ends without a word.
	Home string
}

// DetachError is a detached supervisor's report that its agent does not
// run: its message, and the exit code the launcher should end with.
type DetachError struct {
	Code int
	Msg  string
}

// Error implements error.
func (e *DetachError) Error() string { return e.Msg }

// Detach starts cfg's supervisor in a session of its own (setsid: no
// terminal, no SIGHUP when the launcher's closes), its standard streams on
// /dev/null until it has its log file, and returns once it reports that
// the agent runs, with the sandbox name it reported. A supervisor that
// reports a failure is waited for and returned as a *DetachError.
func Detach(cfg DetachConfig) (string, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return "", fmt.Errorf("detach: %w", err)
	}
	defer r.Close()
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		w.Close()
		return "", fmt.Errorf("detach: %w", err)
	}
	defer null.Close()
	cmd := exec.Command(cfg.Exe, cfg.Args...)
	cmd.Env = cfg.Env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = null, null, null
	cmd.ExtraFiles = []*os.File{w} // NotifyFd
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	w.Close()
	if err != nil {
		return "", fmt.Errorf("detach: start the supervisor: %w", err)
	}
	line, _ := bufio.NewReader(r).ReadString('\n')
	kind, msg, _ := strings.Cut(strings.TrimSuffix(line, "\n"), "\t")
	if kind == "ok" {
		_ = cmd.Process.Release() // it lives on, reparented
		return msg, nil
	}
	werr := cmd.Wait()
	if kind == "err" {
		code := cmd.ProcessState.ExitCode()
		if code <= 0 {
			code = 1
		}
		return "", &DetachError{Code: code, Msg: strings.ReplaceAll(msg, "\\n", "\n")}
	}
	return "", fmt.Errorf("detach: the supervisor ended (%v) before the agent ran; its log, if it made one, is under %s", werr, filepath.Join(cfg.Home, "sandboxes"))
}

// Notifier is the detached supervisor's end of Detach's pipe.
type Notifier struct {
	f    *os.File
	done bool
}

// NewNotifier returns the notifier on descriptor fd (NotifyFd).
func NewNotifier(fd int) *Notifier {
	return &Notifier{f: os.NewFile(uintptr(fd), "supervise-fd")}
}

// LogTo points the process's stdout and stderr at dir's LogFile, so that
// whatever the Go runtime or a library prints lands there.
func (n *Notifier) LogTo(dir string) {
	f, err := os.OpenFile(filepath.Join(dir, LogFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return
	}
	defer f.Close()
	_ = unix.Dup3(int(f.Fd()), 1, 0)
	_ = unix.Dup3(int(f.Fd()), 2, 0)
}

// Running tells the launcher that the agent of sandbox name runs.
func (n *Notifier) Running(name string) {
	n.send("ok\t" + name)
}

// Failed tells the launcher why the agent does not run, err, unless
// Running was sent (then it does nothing).
func (n *Notifier) Failed(err error) {
	if err == nil {
		err = errors.New("the detached supervisor ended before the agent ran")
	}
	n.send("err\t" + strings.ReplaceAll(err.Error(), "\n", "\\n"))
}

func (n *Notifier) send(line string) {
	if n.done {
		return
	}
	n.done = true
	_, _ = io.WriteString(n.f, line+"\n")
	n.f.Close()
}
