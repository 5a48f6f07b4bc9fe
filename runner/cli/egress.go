package cli

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/nemoclaw/nemoclaw/runner/sandbox"
	"github.com/nemoclaw/nemoclaw/runner/supervisor"
)

// addApprovalFlags adds the egress flags of a command that starts a sandbox.
func addApprovalFlags(f *pflag.FlagSet, o *sandboxRunOpts) {
	f.BoolVar(&o.approvals, "approvals", false,
		"hold requests to destinations outside the policy until an operator decides with \"nemoclaw policy approvals NAME\" (default: refuse at once and list them for approval)")
	f.DurationVar(&o.approvalTimeout, "approval-timeout", 2*time.Minute, "how long --approvals holds a request")
}

// launchWarm is the start-up work warmSandboxLaunch does in the background.
var launchWarm struct {
	once sync.Once
	// res is the directory, lock and egress CA of a sandbox name chosen
	// ahead (on disk: the slowest part of the egress set-up). The run
	// takes it unless --name names another; one no run takes is released
	// (discardWarmFiles).
	res   *supervisor.Reservation
	taken atomic.Bool // res belongs to a run, or was released
}

// warmSandboxLaunch starts, before the command line is even parsed, the
// launch work that needs neither flags nor policy: the egress CA's key and
// signature, the directory of a sandbox name chosen now, and the cgroup
// probe. One goroutine starts them all: a `go` statement that finds the
// other core idle starts an OS thread there and then, and four of them
// measured ~0.6 ms on the main goroutine.
func warmSandboxLaunch(app *App) {
	launchWarm.once.Do(func() {
		launchWarm.res = supervisor.NewReservation(app.Home, sandbox.NewName())
		go func() {
			launchWarm.res.Make()
			sandbox.Warm()
		}()
	})
}

// warmName returns the sandbox name warmSandboxLaunch chose, or a new one.
func warmName() string {
	if launchWarm.res != nil && !launchWarm.taken.Load() {
		return launchWarm.res.Name()
	}
	return sandbox.NewName()
}

// takeReservation returns the reservation of sandbox name: the one made
// ahead if it is for name (once), else a new one, made in the background
// while the caller loads the policy. A reservation made ahead for another
// name is released.
func takeReservation(app *App, name string) *supervisor.Reservation {
	if r := launchWarm.res; r != nil && r.Name() == name && launchWarm.taken.CompareAndSwap(false, true) {
		return r
	}
	discardWarmFiles()
	return supervisor.Reserve(app.Home, name)
}

// discardWarmFiles releases the reservation made ahead if no run took it
// (a --help, a flag error, another --name), waiting for it to be made.
func discardWarmFiles() {
	if launchWarm.res == nil || !launchWarm.taken.CompareAndSwap(false, true) {
		return
	}
	launchWarm.res.Release()
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// supervisorLogger returns the logger of sandbox name's supervisor: its
// LogFile, made on the first line, and also stderr when toStderr (stderr
// is no terminal: a pipe, a file). Supervisor logs never go to a terminal,
// where they would land in the middle of the agent's screen.
func supervisorLogger(app *App, name string, toStderr bool) (*slog.Logger, io.Closer) {
	f := &supervisor.LazyFile{Path: filepath.Join(supervisor.Dir(app.Home, name), supervisor.LogFile)}
	var w io.Writer = f
	if toStderr {
		w = io.MultiWriter(app.logOut, f) // stderr first: a failing file does not silence it
	}
	return app.newLogger(w), f
}
