package sandbox

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Features is what the kernel and host offer the sandbox, for `nemoclaw
// doctor`. Checks explains each item in one line.
type Features struct {
	// LandlockABI is the kernel's Landlock ABI (0: none).
	LandlockABI int
	// Seccomp is true when seccomp filters can be loaded.
	Seccomp bool
	// UserNS and NetNS are true when the kernel has the namespace types.
	UserNS, NetNS bool
	// UnprivilegedUserNS is true when a non-root user may create a user
	// namespace (what rootless sandboxes need).
	UnprivilegedUserNS bool
	// Root is true when nemoclaw runs as root.
	Root bool
	// Cgroup is the cgroup v2 delegation state.
	Cgroup CgroupInfo
	// IdmapMounts is true when the kernel has mount_setattr (Linux 5.12+),
	// which a root launcher needs to mount a --workdir idmapped.
	IdmapMounts bool
}

// Check is one line of a feature report.
type Check struct {
	// Name is the feature ("landlock", "seccomp", ...).
	Name string
	// OK is true when the feature is available.
	OK bool
	// Detail is what was found.
	Detail string
	// Enables is what the feature gives the sandbox.
	Enables string
	// Without is what is lost when it is missing.
	Without string
}

// landlockABI returns the kernel's Landlock ABI, 0 when absent.
func landlockABI() int {
	v, err := landlockGetABI()
	if err != nil {
		return 0
	}
	return v
}

// Probe inspects the running kernel without changing anything.
func Probe() Features {
	f := Features{LandlockABI: landlockABI(), Root: os.Geteuid() == 0, Cgroup: CgroupDelegation()}
	if _, err := unix.PrctlRetInt(unix.PR_GET_SECCOMP, 0, 0, 0, 0); err == nil {
		if b, err := os.ReadFile("/proc/self/status"); err == nil && strings.Contains(string(b), "Seccomp_filters:") {
			f.Seccomp = true
		}
	}
	_, errU := os.Stat("/proc/self/ns/user")
	_, errN := os.Stat("/proc/self/ns/net")
	f.UserNS, f.NetNS = errU == nil, errN == nil
	// An invalid descriptor: EBADF where the syscall exists, ENOSYS not.
	f.IdmapMounts = !errors.Is(unix.MountSetattr(-1, "", 0, &unix.MountAttr{}), unix.ENOSYS)
	f.UnprivilegedUserNS = f.UserNS && sysctlInt("/proc/sys/user/max_user_namespaces", 1) > 0 &&
		sysctlInt("/proc/sys/kernel/unprivileged_userns_clone", 1) != 0 &&
		sysctlInt("/proc/sys/kernel/apparmor_restrict_unprivileged_userns", 0) == 0
	return f
}

func sysctlInt(path string, def int) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return def
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return def
	}
	return n
}

// Checks explains f line by line.
func (f Features) Checks() []Check {
	lc := Check{
		Name: "landlock", OK: f.LandlockABI >= landlockFullABI,
		Detail:  fmt.Sprintf("ABI %d", f.LandlockABI),
		Enables: "filesystem_policy enforcement, abstract-socket and signal scoping (ABI 6), opt-in TCP connect rules (ABI 4)",
		Without: "best_effort policies lose the missing rights; hard_requirement policies are refused",
	}
	if f.LandlockABI == 0 {
		lc.Detail = "not available (CONFIG_SECURITY_LANDLOCK off or not in lsm=)"
	}
	userns := Check{
		Name: "user namespaces (unprivileged)", OK: f.UnprivilegedUserNS,
		Detail:  fmt.Sprintf("available=%v, unprivileged=%v", f.UserNS, f.UnprivilegedUserNS),
		Enables: "rootless sandboxes and mapping run_as_user to the caller's uid",
		Without: "only root can start sandboxes",
	}
	cg := Check{
		Name: "cgroup v2 delegation", OK: f.Cgroup.Delegated, Detail: "memory limit: cgroup v2 memory.max under " + f.Cgroup.Parent,
		Enables: "whole-sandbox memory (memory.max), pids and cpu limits held by the kernel",
		Without: "the memory limit is enforced by the supervisor, which watches the sandbox's resident memory and kills it when over; pids via RLIMIT_NPROC; no CPU rate limit",
	}
	if !f.Cgroup.Delegated {
		cg.Detail = "memory limit: supervisor watch of resident memory (" + f.Cgroup.Reason + ")"
	}
	idmap := Check{
		Name: "idmapped mounts", OK: f.IdmapMounts, Detail: fmt.Sprintf("mount_setattr=%v", f.IdmapMounts),
		Enables: "as root, --workdir mounted with the agent acting as the directory's owner (ext4, xfs, btrfs; tmpfs from Linux 6.3): nothing on the host changes hands",
		Without: "as root, a --workdir the agent's uid does not own cannot be mounted: give it to that uid or run rootless as its owner",
	}
	return []Check{
		lc,
		{Name: "seccomp", OK: f.Seccomp, Detail: fmt.Sprintf("filters=%v", f.Seccomp),
			Enables: "the syscall deny list (ptrace, bpf, mount, namespaces, raw/packet/MPTCP sockets, fileless exec)",
			Without: "sandboxes cannot start: seccomp is required"},
		{Name: "network namespaces", OK: f.NetNS, Detail: fmt.Sprintf("available=%v", f.NetNS),
			Enables: "an empty network (only lo) so all egress must pass the policy proxy",
			Without: "sandboxes cannot start: the network namespace is required"},
		userns,
		cg,
		idmap,
	}
}
