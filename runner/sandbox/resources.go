package sandbox

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/nemoclaw/nemoclaw/runner/policy"
)

// CgroupInfo says whether sandboxes can get their own cgroup v2 with the
// memory and pids controllers (delegation) — what `nemoclaw doctor` shows.
type CgroupInfo struct {
	// Dir is this process's cgroup v2 directory ("" when none is mounted).
	Dir string
	// Controllers are the controllers available in Dir.
	Controllers []string
	// Delegated is true when Parent is writable and offers memory and pids.
	Delegated bool
	// Parent is where sandbox cgroups are made: Dir when it is delegated
	// to this user, and for root a "nemoclaw" child of the cgroup v2 root
	// (the root is exempt from the rule that a cgroup with processes in it
	// cannot enable controllers for its children; the launcher's own
	// cgroup is not).
	Parent string
	// Reason explains a false Delegated in one sentence.
	Reason string
}

// CgroupDelegation inspects /proc/self/mountinfo and /proc/self/cgroup.
func CgroupDelegation() CgroupInfo {
	mnt, err := cgroup2Mount()
	if err != nil {
		return CgroupInfo{Reason: err.Error()}
	}
	if os.Geteuid() == 0 {
		if info := rootCgroup(mnt); info.Delegated {
			return info
		}
	}
	rel := ""
	if b, err := os.ReadFile("/proc/self/cgroup"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "0::") {
				rel = strings.TrimPrefix(line, "0::")
			}
		}
	}
	dir := filepath.Join(mnt, rel)
	info := CgroupInfo{Dir: dir}
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
	if err != nil {
		info.Reason = fmt.Sprintf("cannot read %s: %v", filepath.Join(dir, "cgroup.controllers"), err)
		return info
	}
	info.Controllers = strings.Fields(string(b))
	have := map[string]bool{}
	for _, c := range info.Controllers {
		have[c] = true
	}
	switch {
	case !have["memory"] || !have["pids"]:
		info.Reason = fmt.Sprintf("cgroup v2 at %s offers controllers [%s], not memory and pids (they may be bound to cgroup v1)", dir, strings.Join(info.Controllers, " "))
	case unix.Access(dir, unix.W_OK) != nil || unix.Access(filepath.Join(dir, "cgroup.subtree_control"), unix.W_OK) != nil:
		info.Reason = fmt.Sprintf("cgroup %s is not writable by this user (no delegation)", dir)
	default:
		info.Delegated, info.Parent = true, dir
	}
	return info
}

// rootCgroupDir is the child of the cgroup v2 root that holds root's
// sandboxes.
const rootCgroupDir = "nemoclaw"

// rootCgroup is root's plan: sandboxes under <mnt>/nemoclaw, when the v2
// root offers memory and pids and can hand them down.
func rootCgroup(mnt string) CgroupInfo {
	info := CgroupInfo{Dir: mnt, Parent: filepath.Join(mnt, rootCgroupDir)}
	b, err := os.ReadFile(filepath.Join(mnt, "cgroup.controllers"))
	if err != nil {
		info.Reason = fmt.Sprintf("cannot read %s: %v", filepath.Join(mnt, "cgroup.controllers"), err)
		return info
	}
	info.Controllers = strings.Fields(string(b))
	have := map[string]bool{}
	for _, c := range info.Controllers {
		have[c] = true
	}
	switch {
	case !have["memory"] || !have["pids"]:
		info.Reason = fmt.Sprintf("cgroup v2 at %s offers controllers [%s], not memory and pids (they are bound to cgroup v1: boot with systemd.unified_cgroup_hierarchy=1)", mnt, strings.Join(info.Controllers, " "))
	case unix.Access(filepath.Join(mnt, "cgroup.subtree_control"), unix.W_OK) != nil:
		info.Reason = fmt.Sprintf("%s is not writable (a read-only cgroup mount?)", filepath.Join(mnt, "cgroup.subtree_control"))
	default:
		info.Delegated = true
	}
	return info
}

// enableControllers writes each of want ("+memory") that dir's
// cgroup.subtree_control lacks.
func enableControllers(dir string, want []string) error {
	sub := filepath.Join(dir, "cgroup.subtree_control")
	cur, _ := os.ReadFile(sub)
	for _, w := range want {
		if !strings.Contains(" "+strings.TrimSpace(string(cur))+" ", " "+w[1:]+" ") {
			if err := os.WriteFile(sub, []byte(w), 0o644); err != nil {
				return fmt.Errorf("enable %s in %s: %w", w[1:], sub, err)
			}
		}
	}
	return nil
}

// cgroup2Mount finds the cgroup v2 mount point.
func cgroup2Mount() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("read mountinfo: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		for i, fl := range fields {
			if fl == "-" && i+1 < len(fields) && fields[i+1] == "cgroup2" && len(fields) > 4 {
				return fields[4], nil
			}
		}
	}
	return "", errors.New("no cgroup v2 filesystem is mounted")
}

// resourcePlan is how a policy's resources are enforced for one sandbox.
type resourcePlan struct {
	rlimits []rlimitSpec
	// cgroupDir is the sandbox's own cgroup when delegation worked.
	cgroupDir string
	// memory is the byte limit (also bounds the private tmpfs mounts).
	memory uint64
	// watchMemory is the limit the supervisor enforces on the sandbox's
	// resident memory (watchResident) when no cgroup holds it; 0: none.
	watchMemory uint64
	// summary says what applied, for the run's log.
	summary []string
}

// policyMemory is the policy's memory limit in bytes (0: none), as
// planResources reads it.
func policyMemory(p *policy.Policy) (uint64, error) {
	if p.Resources == nil || p.Resources.Memory == "" {
		return 0, nil
	}
	return policy.ParseBytes(p.Resources.Memory)
}

// planResources decides between cgroup v2 and the fallbacks (the
// supervisor's watch of resident memory, rlimits) and creates the cgroup
// when it can. cg is the delegation state; name names the cgroup; how is
// the memory enforcement asked for (Config.MemoryEnforcement).
func planResources(r *policy.Resources, cg CgroupInfo, name string, how MemoryEnforcement) (*resourcePlan, error) {
	rp := &resourcePlan{rlimits: []rlimitSpec{{Resource: unix.RLIMIT_CORE, Name: "RLIMIT_CORE", Value: 0}}}
	if r == nil {
		r = &policy.Resources{}
	}
	var mem uint64
	var cpuMilli int
	var err error
	if r.Memory != "" {
		if mem, err = policy.ParseBytes(r.Memory); err != nil {
			return nil, fmt.Errorf("resources.memory: %w", err)
		}
		rp.memory = mem
	}
	if r.CPU != "" {
		if cpuMilli, err = policy.ParseCPU(r.CPU); err != nil {
			return nil, fmt.Errorf("resources.cpu: %w", err)
		}
	}
	if r.Pids < 0 || r.OpenFiles < 0 {
		return nil, fmt.Errorf("resources: pids and open_files must be positive")
	}
	if r.OpenFiles > 0 {
		rp.rlimits = append(rp.rlimits, rlimitSpec{Resource: unix.RLIMIT_NOFILE, Name: "RLIMIT_NOFILE", Value: uint64(r.OpenFiles)})
		rp.summary = append(rp.summary, fmt.Sprintf("open_files=%d via RLIMIT_NOFILE", r.OpenFiles))
	}
	if mem == 0 && r.Pids == 0 && cpuMilli == 0 {
		return rp, nil
	}
	switch {
	case how == MemorySupervisor:
		rp.summary = append(rp.summary, "cgroup v2 not used: memory enforcement \"supervisor\" was asked for ("+MemoryEnforcementEnv+" or Config.MemoryEnforcement)")
	case cg.Delegated:
		dir, err := makeCgroup(cg.Parent, "nemoclaw-"+name, mem, r.Pids, cpuMilli)
		if err == nil {
			rp.cgroupDir = dir
			rp.summary = append(rp.summary, fmt.Sprintf("memory/pids/cpu via cgroup v2 %s (memory.max counts resident memory of the whole sandbox)", dir))
			return rp, nil
		}
		if how == MemoryCgroup {
			return nil, fmt.Errorf("memory enforcement \"cgroup\" was asked for and cgroup v2 failed: %w", err)
		}
		rp.summary = append(rp.summary, fmt.Sprintf("cgroup v2 delegation failed (%v); falling back", err))
	case how == MemoryCgroup:
		return nil, fmt.Errorf("memory enforcement \"cgroup\" was asked for but cgroup v2 is unavailable: %s", cg.Reason)
	default:
		rp.summary = append(rp.summary, "cgroup v2 not available ("+cg.Reason+"); falling back")
	}
	if mem > 0 {
		// Not RLIMIT_DATA: it counts address space reserved with
		// PROT_NONE-then-mprotect (V8 reserves ~510 MiB per JavaScript
		// thread, Go and JVMs their heaps' arenas), so Node agents died
		// at 4Gi while using under 2 GiB. What the limit means is
		// resident memory; the supervisor measures and enforces that.
		rp.watchMemory = mem
		rp.summary = append(rp.summary, fmt.Sprintf("memory=%d bytes enforced by the supervisor on the sandbox's resident memory (anonymous + shared memory of all its processes, polled; killed with \"memory limit exceeded\" when over); /tmp, /dev/shm and /run sized from it", mem))
	}
	if r.Pids > 0 {
		rp.rlimits = append(rp.rlimits, rlimitSpec{Resource: unix.RLIMIT_NPROC, Name: "RLIMIT_NPROC", Value: uint64(r.Pids)})
		rp.summary = append(rp.summary, fmt.Sprintf("pids=%d via RLIMIT_NPROC (counts every task of the sandbox user)", r.Pids))
	}
	if cpuMilli > 0 {
		rp.summary = append(rp.summary, fmt.Sprintf("cpu=%s NOT applied: a CPU rate limit needs a delegated cgroup v2 with the cpu controller", r.CPU))
	}
	return rp, nil
}

// makeCgroup creates parent/leaf with the given limits.
func makeCgroup(parent, leaf string, mem uint64, pids, cpuMilli int) (string, error) {
	want := []string{"+memory", "+pids"}
	if cpuMilli > 0 {
		want = append(want, "+cpu")
	}
	if filepath.Base(parent) == rootCgroupDir {
		// Root's own parent under the v2 root: made here, with the
		// controllers handed down from the root to it.
		if err := enableControllers(filepath.Dir(parent), want); err != nil {
			return "", err
		}
		if err := os.Mkdir(parent, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return "", fmt.Errorf("create cgroup %s: %w", parent, err)
		}
	}
	if err := enableControllers(parent, want); err != nil {
		return "", err
	}
	dir := filepath.Join(parent, leaf)
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return "", fmt.Errorf("create cgroup %s: %w", dir, err)
	}
	write := func(file, v string) error {
		if err := os.WriteFile(filepath.Join(dir, file), []byte(v), 0o644); err != nil {
			_ = os.Remove(dir)
			return fmt.Errorf("write %s: %w", filepath.Join(dir, file), err)
		}
		return nil
	}
	if mem > 0 {
		if err := write("memory.max", strconv.FormatUint(mem, 10)); err != nil {
			return "", err
		}
		// Without swap accounting the file is absent; memory.max still holds.
		_ = os.WriteFile(filepath.Join(dir, "memory.swap.max"), []byte("0"), 0o644)
	}
	if pids > 0 {
		if err := write("pids.max", strconv.Itoa(pids)); err != nil {
			return "", err
		}
	}
	if cpuMilli > 0 {
		if err := write("cpu.max", fmt.Sprintf("%d 100000", cpuMilli*100)); err != nil {
			return "", err
		}
	}
	return dir, nil
}

// tmpfsLimits are the mount options that bound the sandbox's own tmpfs
// mounts: tmpfs pages and inodes are kernel memory that no rlimit counts,
// so without them an agent could fill RAM through /dev/shm or /tmp past
// its memory limit (and, with a delegated cgroup, be OOM-killed instead of
// told ENOSPC). Empty strings leave the kernel's defaults (no limit asked).
type tmpfsLimits struct {
	// Tmp is /tmp's (which also holds an in-memory workspace): the whole
	// memory limit.
	Tmp string `json:"tmp,omitempty"`
	// Shm is /dev/shm's: half of it, so that a full /dev/shm still
	// leaves the agent memory to run in under a cgroup limit.
	Shm string `json:"shm,omitempty"`
	// Run is /run's: small, it holds only nemoclaw's placed files.
	Run string `json:"run"`
}

// tmpfsInodeBytes is the memory budget one tmpfs inode stands for: an
// empty file costs about 1 KiB of unreclaimable slab (inode and dentry)
// and no page, so capping inodes at one per 4 KiB of the limit keeps
// files-without-data to a quarter of it.
const tmpfsInodeBytes = 4096

// minTmpfsInodes keeps a tiny memory limit's tmpfs usable.
const minTmpfsInodes = 1024

// planTmpfs sizes the sandbox's tmpfs mounts from the memory limit mem
// (bytes, 0 for none).
func planTmpfs(mem uint64) tmpfsLimits {
	const runSize, runInodes = 16 << 20, 4096
	if mem == 0 {
		return tmpfsLimits{Run: fmt.Sprintf("size=%d,nr_inodes=%d", runSize, runInodes)}
	}
	opts := func(size uint64) string {
		return fmt.Sprintf("size=%d,nr_inodes=%d", size, max(size/tmpfsInodeBytes, minTmpfsInodes))
	}
	return tmpfsLimits{Tmp: opts(mem), Shm: opts(mem / 2), Run: opts(min(mem, runSize))}
}

// PlannedCgroup is the cgroup directory a sandbox named name gets when its
// resources ask for one ("" where cgroup v2 is not delegated): what a
// supervisor records before the start, so that destroy finds it even if a
// kill comes before the sandbox reports it.
func PlannedCgroup(name string) string {
	info := cgroupInfo() // the probe Start uses, made once per process
	if !info.Delegated || info.Parent == "" {
		return ""
	}
	return filepath.Join(info.Parent, "nemoclaw-"+name)
}
