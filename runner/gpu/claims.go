package gpu

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"golang.org/x/sys/unix"
)

// ClaimFile is the file in a sandbox's directory that names the GPUs it
// holds while it runs.
const ClaimFile = "gpus.json"

// claimsLock serialises select-and-claim across nemoclaw processes.
const claimsLock = ".gpus.lock"

// Claims records which running sandbox holds which GPU, one ClaimFile in
// each sandbox's directory ($NEMOCLAW_HOME/sandboxes/<name>). A claim names
// its supervisor's pid and start time: one whose supervisor is gone (it
// was killed, the host rebooted) no longer holds anything.
type Claims struct {
	// Root is the directory holding the sandboxes' directories.
	Root string
	// Alive reports whether pid, started at start (clock ticks after
	// boot), still runs; supervisor.ProcessAlive.
	Alive func(pid int, start uint64) bool
}

// claim is one ClaimFile.
type claim struct {
	Sandbox  string   `json:"sandbox"`
	Pid      int      `json:"pid"`
	PidStart uint64   `json:"pid_start"`
	Devices  []string `json:"devices"`
}

// InUse maps each device UUID held by a live sandbox other than except to
// that sandbox's name.
func (c *Claims) InUse(except string) (map[string]string, error) {
	out := map[string]string{}
	ents, err := os.ReadDir(c.Root)
	if errors.Is(err, os.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read gpu claims: %w", err)
	}
	for _, e := range ents {
		if !e.IsDir() || e.Name() == except {
			continue
		}
		b, err := os.ReadFile(filepath.Join(c.Root, e.Name(), ClaimFile))
		if err != nil {
			continue // no claim
		}
		var cl claim
		if json.Unmarshal(b, &cl) != nil || c.Alive == nil || !c.Alive(cl.Pid, cl.PidStart) {
			continue // unreadable or stale: its supervisor is gone
		}
		for _, d := range cl.Devices {
			out[d] = e.Name()
		}
	}
	return out, nil
}

// Claim selects r's devices for sandbox name and records them, under a
// lock so that two sandboxes starting at once cannot take the same GPU.
// release removes the record; call it when the sandbox ends.
func (c *Claims) Claim(name string, pid int, pidStart uint64, inv *Inventory, r Request) (sel []Selected, release func(), err error) {
	release = func() {}
	if r.Empty() {
		return nil, release, nil
	}
	if err := os.MkdirAll(c.Root, 0o700); err != nil {
		return nil, release, fmt.Errorf("claim gpus: %w", err)
	}
	lf, err := os.OpenFile(filepath.Join(c.Root, claimsLock), os.O_CREATE|os.O_RDWR|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, release, fmt.Errorf("claim gpus: %w", err)
	}
	defer lf.Close()
	if err := unix.Flock(int(lf.Fd()), unix.LOCK_EX); err != nil {
		return nil, release, fmt.Errorf("claim gpus: lock: %w", err)
	}
	inUse, err := c.InUse(name)
	if err != nil {
		return nil, release, err
	}
	if sel, err = Select(inv, r, inUse); err != nil {
		return nil, release, err
	}
	cl := claim{Sandbox: name, Pid: pid, PidStart: pidStart}
	for _, s := range sel {
		// A MIG instance's parent is not claimed: its other instances stay free.
		cl.Devices = append(cl.Devices, s.UUID)
	}
	sort.Strings(cl.Devices)
	dir := filepath.Join(c.Root, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, release, fmt.Errorf("claim gpus: %w", err)
	}
	b, _ := json.MarshalIndent(cl, "", "  ")
	tmp, err := os.CreateTemp(dir, "."+ClaimFile+".*")
	if err != nil {
		return nil, release, fmt.Errorf("claim gpus: %w", err)
	}
	_, err = tmp.Write(append(b, '\n'))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	path := filepath.Join(dir, ClaimFile)
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return nil, release, fmt.Errorf("claim gpus: write %s: %w", path, err)
	}
	return sel, func() { _ = os.Remove(path) }, nil
}
