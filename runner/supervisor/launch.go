package supervisor

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/nemoclaw/nemoclaw/runner/gpu"
	"github.com/nemoclaw/nemoclaw/runner/inference"
	"github.com/nemoclaw/nemoclaw/runner/policy"
)

// LaunchFile keeps what `sandbox start` needs to bring a stopped sandbox
// back (Launch).
const LaunchFile = "launch.json"

// Launch is how a sandbox was started, and the policy it last ran under
// (live changes included): `sandbox start` starts it again from this,
// with the same workspace and the approvals saved beside it.
type Launch struct {
	V               int            `json:"v"`
	Policy          *policy.Policy `json:"policy"`
	Command         []string       `json:"command"`
	Env             []string       `json:"env,omitempty"`
	Workdir         string         `json:"workdir,omitempty"`
	KeepWorkspace   bool           `json:"keep_workspace,omitempty"`
	StopTimeout     time.Duration  `json:"stop_timeout,omitempty"`
	Approvals       bool           `json:"approvals,omitempty"`
	ApprovalTimeout time.Duration  `json:"approval_timeout,omitempty"`
	Blueprint       string         `json:"blueprint,omitempty"`
	Version         string         `json:"version,omitempty"`
	// GPUs are asked for again at each start (UUIDs name the same devices).
	GPUs gpu.Request `json:"gpus,omitzero"`
	// CDIDirs are --cdi-spec-dir, looked in again at each start.
	CDIDirs []string `json:"cdi_dirs,omitempty"`
	Tools   string   `json:"tools,omitempty"`
	// Inference is the sandbox's routes without their keys (Route.Unkeyed):
	// start reads the keys again from its own environment.
	Inference *LaunchInference `json:"inference,omitempty"`
}

// LaunchInference is what a launch record keeps of a sandbox's inference.
type LaunchInference struct {
	// Profile is the route in force at the start.
	Profile string `json:"profile"`
	// Routes are every route, each without its credential.
	Routes []inference.Route `json:"routes"`
}

// launchInference is ic as a launch record keeps it (nil for none).
func launchInference(ic *InferenceConfig) *LaunchInference {
	if ic == nil || len(ic.Routes) == 0 {
		return nil
	}
	li := &LaunchInference{Profile: ic.Profile, Routes: make([]inference.Route, len(ic.Routes))}
	for i, r := range ic.Routes {
		li.Routes[i] = r.Unkeyed()
	}
	return li
}

// launchOf is cfg's Launch, under pol.
func launchOf(cfg *Config, pol *policy.Policy) *Launch {
	l := &Launch{
		V: recordVersion, Policy: pol, Command: cfg.Command, Env: cfg.Env, KeepWorkspace: cfg.KeepWorkspace,
		StopTimeout: cfg.StopTimeout, Approvals: cfg.Approvals, ApprovalTimeout: cfg.ApprovalTimeout,
		Blueprint: cfg.Blueprint, Version: cfg.BlueprintVersion, GPUs: cfg.GPUs, CDIDirs: cfg.GPU.Passthrough.CDIDirs, Tools: cfg.Tools,
		Inference: launchInference(cfg.Inference),
	}
	if cfg.Workdir != "" {
		// Absolute: start may run from another directory.
		if abs, err := filepath.Abs(cfg.Workdir); err == nil {
			l.Workdir = abs
		}
	}
	return l
}

// writeLaunch replaces dir's LaunchFile atomically; it holds the agent's
// environment, so it is the owner's alone (0600, in a 0700 directory).
func writeLaunch(dir string, l *Launch) error {
	b, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return fmt.Errorf("write %s: %w", LaunchFile, err)
	}
	f, err := os.CreateTemp(dir, "."+LaunchFile+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", LaunchFile, err)
	}
	_, err = f.Write(append(b, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), filepath.Join(dir, LaunchFile))
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return fmt.Errorf("write %s: %w", filepath.Join(dir, LaunchFile), err)
	}
	return nil
}

// LoadLaunch returns how sandbox name was started, for `sandbox start`. A
// running sandbox is refused: it has a supervisor already.
func LoadLaunch(home, name string) (*Launch, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	dir := Dir(home, name)
	in := inspectDir(dir, name)
	if in.State == StateRunning || in.State == StateStarting {
		return nil, fmt.Errorf("start %s: the sandbox is %s already (supervisor pid %d)", name, in.State, in.SupervisorPid)
	}
	b, err := os.ReadFile(filepath.Join(dir, LaunchFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("start %s: no %s in %s: the sandbox never ran under this nemoclaw, or was destroyed\n  what to do: start it anew with nemoclaw sandbox run --name %s", name, LaunchFile, dir, name)
	}
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	var l Launch
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, fmt.Errorf("start %s: read %s: %w", name, filepath.Join(dir, LaunchFile), err)
	}
	if l.V > recordVersion {
		return nil, fmt.Errorf("start %s: %s version %d is newer than this nemoclaw's (%d): upgrade nemoclaw", name, LaunchFile, l.V, recordVersion)
	}
	if l.Policy == nil || len(l.Command) == 0 {
		return nil, fmt.Errorf("start %s: %s has no policy or command", name, filepath.Join(dir, LaunchFile))
	}
	return &l, nil
}
