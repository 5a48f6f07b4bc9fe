package sandbox

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// MemoryEnforcement says how a policy's resources.memory is held.
type MemoryEnforcement string

// The memory enforcement mechanisms.
const (
	// MemoryAuto uses a cgroup v2 (memory.max) where one can be made and
	// the supervisor's watch of resident memory otherwise.
	MemoryAuto MemoryEnforcement = ""
	// MemoryCgroup requires the cgroup: the start fails without one.
	MemoryCgroup MemoryEnforcement = "cgroup"
	// MemorySupervisor skips the cgroup and has the supervisor watch the
	// sandbox's resident memory (what a host without delegation gets).
	MemorySupervisor MemoryEnforcement = "supervisor"
)

// MemoryEnforcementEnv names the environment variable that selects the
// mechanism when Config.MemoryEnforcement is empty ("cgroup",
// "supervisor"; unset or "auto": MemoryAuto). It is read by the process
// that starts the sandbox, so a detached supervisor inherits it.
const MemoryEnforcementEnv = "NEMOCLAW_MEMORY_ENFORCEMENT"

// memoryEnforcement resolves Config.MemoryEnforcement and the environment.
func memoryEnforcement(how MemoryEnforcement) (MemoryEnforcement, error) {
	if how == MemoryAuto {
		how = MemoryEnforcement(os.Getenv(MemoryEnforcementEnv))
	}
	switch how {
	case MemoryAuto, "auto":
		return MemoryAuto, nil
	case MemoryCgroup, MemorySupervisor:
		return how, nil
	}
	return "", fmt.Errorf("memory enforcement %q (Config.MemoryEnforcement or %s) is not one of auto, cgroup, supervisor", how, MemoryEnforcementEnv)
}

// MemoryLimitError is how a sandbox ended that used more memory than its
// limit: the supervisor's watch killed it, or the cgroup's OOM killer
// killed a process in it.
type MemoryLimitError struct {
	// Limit is resources.memory in bytes.
	Limit uint64
	// Used is the resident memory measured when the watch acted (0 when
	// the cgroup's OOM killer did).
	Used uint64
	// Mechanism is "supervisor" or "cgroup".
	Mechanism string
	// OOMKills is the cgroup's oom_kill count (cgroup only).
	OOMKills int
}

// Error implements error.
func (e *MemoryLimitError) Error() string {
	if e.Mechanism == string(MemoryCgroup) {
		return fmt.Sprintf("sandbox: memory limit exceeded: the kernel's OOM killer killed %d process(es) of the sandbox at memory.max=%s (cgroup v2)\n  what to do: raise resources.memory in the policy or --memory", e.OOMKills, fmtBytes(e.Limit))
	}
	if e.Used == 0 {
		return fmt.Sprintf("sandbox: memory limit %s not enforceable: the supervisor could not read the sandbox's processes in /proc, so it killed the sandbox (no cgroup v2)\n  what to do: see the supervisor log; a cgroup v2 with the memory controller avoids the watch", fmtBytes(e.Limit))
	}
	return fmt.Sprintf("sandbox: memory limit exceeded: resident memory %s > limit %s; every process of the sandbox was killed (enforced by the supervisor: no cgroup v2)\n  what to do: raise resources.memory in the policy or --memory", fmtBytes(e.Used), fmtBytes(e.Limit))
}

func fmtBytes(b uint64) string {
	return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
}

// Polling intervals of the watch: slow while the sandbox is far from its
// limit, fast once it is past half of it or grew by an eighth of it since
// its peak, so that an agent racing towards
// the limit is caught within 50 ms of allocation. One poll costs about
// 15 µs per host process (its stat file) plus 20 µs per process of the
// sandbox (its status file): ~1.5 ms on a host of 100 processes, under 1%
// of a core at 200 ms (BenchmarkTreeResident*).
const (
	memPollSlow = 200 * time.Millisecond
	memPollFast = 50 * time.Millisecond
)

// watchResident enforces limit on the sandbox's resident memory until the
// sandbox ends: every poll it sums the anonymous and shared-memory
// resident pages (RssAnon + RssShmem of /proc/PID/status: counters the
// kernel keeps, so a poll walks no page tables) of the sandbox's init and
// all its descendants — every process of the sandbox's pid namespace: the
// init is that namespace's pid 1, which inherits its orphans, and it forks
// the joined processes (`sandbox exec`) too — and kills the whole sandbox
// (its init: the kernel kills the rest of the namespace) once the sum is
// over limit. The tree is read from /proc/PID/stat and status, which any
// user may read: a rootless supervisor may not inspect a pre-spawned init's
// namespace links (it was made non-dumpable before its user namespace
// existed). File-backed pages are not counted: they are page cache the
// kernel reclaims, as a cgroup would. Address space that is only reserved
// (PROT_NONE, untouched) is not resident, which is the point: V8, Go and
// JVMs reserve far more than they use.
func (sb *Sandbox) watchResident(limit uint64) {
	// The first poll after memPollFast: a quick command (an agent may run
	// one per tool call) is over before and pays nothing; the first
	// second is watched closely, as a start allocates fastest.
	start := time.Now()
	t := time.NewTimer(memPollFast)
	defer t.Stop()
	var peak uint64
	for {
		select {
		case <-sb.done:
			sb.log.Debug("memory watch ended", "peak_resident", peak, "limit", limit)
			return
		case <-t.C:
		}
		used, err := treeResident(sb.pid)
		if err != nil {
			// Fail closed: a limit that cannot be measured is not a limit.
			sb.log.Error("memory limit: cannot measure the sandbox's memory: killing it", "err", err)
			sb.memErr.Store(&MemoryLimitError{Limit: limit, Mechanism: string(MemorySupervisor)})
			_ = sb.proc.Kill()
			return
		}
		grew := used > peak+limit/8 // fast growth: watch closely too
		peak = max(peak, used)
		if used > limit {
			e := &MemoryLimitError{Limit: limit, Used: used, Mechanism: string(MemorySupervisor)}
			sb.memErr.Store(e)
			sb.log.Error("memory limit exceeded: killing the sandbox", "resident", used, "limit", limit, "mechanism", "supervisor")
			_ = sb.proc.Kill() // pid 1 of the namespace: the kernel kills the rest
			return
		}
		next := memPollSlow
		if used > limit/2 || grew || time.Since(start) < time.Second {
			next = memPollFast
		}
		t.Reset(next)
	}
}

// treeResident sums RssAnon and RssShmem over process root and its
// descendants.
func treeResident(root int) (uint64, error) {
	d, err := os.Open("/proc")
	if err != nil {
		return 0, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return 0, err
	}
	children := map[int][]int{}
	buf := make([]byte, 4096)
	for _, n := range names {
		if n == "" || n[0] < '1' || n[0] > '9' {
			continue
		}
		pid, err := strconv.Atoi(n)
		if err != nil {
			continue
		}
		// A process that exited since the listing is nobody's child.
		if ppid := statPPid(pid, buf); ppid > 0 {
			children[ppid] = append(children[ppid], pid)
		}
	}
	var total uint64
	seen := map[int]bool{}
	queue := []int{root}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		if seen[pid] {
			continue
		}
		seen[pid] = true
		total += statusRSS("/proc/"+strconv.Itoa(pid)+"/status", buf)
		queue = append(queue, children[pid]...)
	}
	return total, nil
}

// statPPid is the parent pid from /proc/PID/stat (0 when unreadable). The
// command name, in parentheses, may hold anything: the fields are read
// after its last ')'.
func statPPid(pid int, buf []byte) int {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	n, _ := f.Read(buf)
	f.Close()
	return parseStatPPid(buf[:n])
}

// parseStatPPid takes the ppid (the 4th field) out of stat text.
func parseStatPPid(b []byte) int {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 2 {
		return 0
	}
	ppid, err := strconv.Atoi(string(f[1]))
	if err != nil || ppid < 0 {
		return 0
	}
	return ppid
}

// statusRSS reads RssAnon + RssShmem (bytes) from a /proc/PID/status file.
func statusRSS(path string, buf []byte) uint64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	n, _ := f.Read(buf)
	f.Close()
	return parseStatusRSS(buf[:n])
}

// parseStatusRSS takes RssAnon and RssShmem (kB) out of status text.
func parseStatusRSS(b []byte) uint64 {
	var total uint64
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		var rest []byte
		var ok bool
		if rest, ok = bytes.CutPrefix(line, []byte("RssAnon:")); !ok {
			if rest, ok = bytes.CutPrefix(line, []byte("RssShmem:")); !ok {
				continue
			}
		}
		f := bytes.Fields(rest)
		if len(f) != 2 || string(f[1]) != "kB" {
			continue
		}
		if kb, err := strconv.ParseUint(string(f[0]), 10, 64); err == nil && kb < 1<<44 {
			total += kb << 10
		}
	}
	return total
}

// cgroupOOM is the cgroup's oom_kill count from memory.events.
func cgroupOOM(dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, "memory.events"))
	if err != nil {
		return 0
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("oom_kill ")); ok {
			n, _ := strconv.Atoi(string(bytes.TrimSpace(v)))
			return n
		}
	}
	return 0
}

// memoryEnded is the MemoryLimitError of a sandbox that ended over its
// memory limit, nil otherwise; it logs the cgroup case, which the watch
// did not see.
func (sb *Sandbox) memoryEnded() error {
	if e := sb.memErr.Load(); e != nil {
		return e
	}
	if sb.cgroupDir != "" && sb.memLimit > 0 {
		if n := cgroupOOM(sb.cgroupDir); n > 0 {
			e := &MemoryLimitError{Limit: sb.memLimit, Mechanism: string(MemoryCgroup), OOMKills: n}
			sb.log.Error("memory limit exceeded: the kernel's OOM killer acted in the sandbox's cgroup", "oom_kills", n, "limit", sb.memLimit, "mechanism", "cgroup", "cgroup", sb.cgroupDir)
			return e
		}
	}
	return nil
}
