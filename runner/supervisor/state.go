package supervisor

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// Sandbox states as List and Inspect report them.
const (
	// StateRunning: its supervisor is alive.
	StateRunning = "running"
	// StateStopped: its supervisor ended cleanly (or it never recorded a
	// run: a directory left by an older nemoclaw, a kept workspace).
	StateStopped = "stopped"
	// StateDead: its record says running but its supervisor is gone (it
	// was killed, or the host rebooted). The sandbox's processes died with
	// it: the init is tied to the supervisor by PR_SET_PDEATHSIG.
	StateDead = "dead"
	// StateStarting: its supervisor is setting it up (the agent does not
	// run yet). A record left in this state by a supervisor that is gone
	// is StateDead with Info.DiedWhile "starting".
	StateStarting = "starting"
)

// recordVersion is the version of the Record format.
const recordVersion = 1

// Record is what a supervisor writes to its sandbox's StateFile: once the
// agent runs, and again when the run ends. It is how `sandbox list` finds
// a supervisor and tells a live one from a dead one without asking it.
type Record struct {
	V     int    `json:"v"`
	Name  string `json:"name"`
	State string `json:"state"` // StateStarting, StateRunning or StateStopped
	// SupervisorPid and SupervisorStart (clock ticks after boot, field 22
	// of /proc/PID/stat) name the supervisor process; the start time tells
	// it from a later process that got the same pid.
	SupervisorPid   int    `json:"supervisor_pid"`
	SupervisorStart uint64 `json:"supervisor_start"`
	// InitPid and InitStart name the sandbox's init (its pid 1).
	InitPid   int       `json:"init_pid"`
	InitStart uint64    `json:"init_start"`
	Started   time.Time `json:"started"`
	Ended     time.Time `json:"ended,omitzero"`
	ExitCode  *int      `json:"exit_code,omitempty"`
	// Blueprint and Version are set by `blueprint apply`.
	Blueprint string   `json:"blueprint,omitempty"`
	Version   string   `json:"version,omitempty"`
	Workspace string   `json:"workspace,omitempty"`
	Detached  bool     `json:"detached,omitempty"`
	Command   []string `json:"command,omitempty"`
	// Cgroup is the host path of the sandbox's cgroup, if it has one:
	// what destroy must remove after a supervisor died.
	Cgroup string `json:"cgroup,omitempty"`
}

// writeRecord replaces dir's StateFile atomically (a reader sees the old
// record or the new one, never half of one).
func writeRecord(dir string, r *Record) error {
	r.V = recordVersion
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("write %s: %w", StateFile, err)
	}
	f, err := os.CreateTemp(dir, "."+StateFile+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", StateFile, err)
	}
	_, err = f.Write(append(b, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), filepath.Join(dir, StateFile))
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return fmt.Errorf("write %s: %w", filepath.Join(dir, StateFile), err)
	}
	return nil
}

// readRecord reads dir's StateFile; a missing one is os.ErrNotExist.
func readRecord(dir string) (*Record, error) {
	b, err := os.ReadFile(filepath.Join(dir, StateFile))
	if err != nil {
		return nil, err
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("read %s: %w", filepath.Join(dir, StateFile), err)
	}
	if r.V > recordVersion {
		return nil, fmt.Errorf("read %s: record version %d is newer than this nemoclaw's (%d): upgrade nemoclaw", filepath.Join(dir, StateFile), r.V, recordVersion)
	}
	return &r, nil
}

// procStart returns the start time of process pid in clock ticks after
// boot (field 22 of /proc/PID/stat), or an error if there is no such
// process or it has exited (a zombie).
func procStart(pid int) (uint64, error) {
	if pid <= 0 {
		return 0, fmt.Errorf("pid %d: %w", pid, os.ErrNotExist)
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	start, err := parseStat(b)
	if err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return start, nil
}

// parseStat returns the start time in a /proc/PID/stat line, or an error
// for a zombie's (it has exited) or a line it cannot read.
func parseStat(b []byte) (uint64, error) {
	// The command name (field 2) may hold spaces and parentheses: the
	// fields that follow start after its last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("no ')'")
	}
	f := bytes.Fields(b[i+1:])
	const startField = 22 - 3 // fields after the name begin at field 3
	if len(f) <= startField {
		return 0, fmt.Errorf("%d fields", len(f)+2)
	}
	// A zombie has ended; only its parent's wait is missing (a detached
	// supervisor's parent is whatever reaps orphans, maybe slowly).
	if st := string(f[0]); st == "Z" || st == "X" {
		return 0, fmt.Errorf("the process has exited: %w", os.ErrNotExist)
	}
	return strconv.ParseUint(string(f[startField]), 10, 64)
}

// alive reports whether process pid still is the one that started at start.
func alive(pid int, start uint64) bool {
	s, err := procStart(pid)
	return err == nil && s == start
}

// ProcessStart is procStart for callers outside the package (run
// records name their process by pid and start time).
func ProcessStart(pid int) (uint64, error) { return procStart(pid) }

// ProcessAlive reports whether process pid still is the one that started
// at start (clock ticks after boot).
func ProcessAlive(pid int, start uint64) bool { return alive(pid, start) }

// ErrNoSandbox marks a sandbox name with no directory (errors.Is).
var ErrNoSandbox = errors.New("no such sandbox")
