package sandbox

import (
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

//go:generate go test -run ^TestSeccompFiltersGenerated$ -update .

// deniedSyscalls fail with EPERM inside the sandbox: kernel attack surface
// and everything that could leave or reshape the sandbox. Names unknown to
// the target architecture are skipped.
var deniedSyscalls = []string{
	// other processes' memory
	"ptrace", "process_vm_readv", "process_vm_writev", "kcmp",
	// kernel programmability and observability
	"bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register",
	// kernel code and machine state
	"kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
	"reboot", "swapon", "swapoff", "acct", "syslog", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
	// mounts and roots
	"mount", "umount2", "pivot_root", "chroot", "mount_setattr", "move_mount", "open_tree",
	"fsopen", "fsconfig", "fsmount", "fspick",
	// namespaces
	"setns",
	// kernel keyrings
	"keyctl", "add_key", "request_key",
	// file handles bypass path-based checks
	"open_by_handle_at", "name_to_handle_at",
	// legacy or privileged interfaces
	"lookup_dcookie", "quotactl", "quotactl_fd", "nfsservctl", "vhangup", "uselib",
	// x86 segment descriptors (16-bit and Wine code; a source of kernel bugs)
	"modify_ldt",
	// filesystem-wide event monitoring (unprivileged since 5.13)
	"fanotify_init",
	// another process's descriptors: the same access as ptrace
	"pidfd_getfd",
}

// lastReviewedSyscall is the newest system call the lists here were
// reviewed against: Linux 6.7's futex_requeue, the last one libseccomp
// 2.5.4 knows (number 456 on every architecture: from 424 on the numbers
// are shared). Every number above it answers ENOSYS, as runc does: a
// syscall added later (statmount, listmount, lsm_*, open_tree_attr, ...)
// is refused until someone reviews it, and libc takes ENOSYS for "not on
// this kernel" and falls back. Raise it only after reviewing the syscalls
// in between and adding the dangerous ones above.
const lastReviewedSyscall = "futex_requeue"

// nsCloneFlags are the namespace-creating flags of clone and unshare.
var nsCloneFlags = []uint64{
	unix.CLONE_NEWNS, unix.CLONE_NEWUTS, unix.CLONE_NEWIPC, unix.CLONE_NEWUSER,
	unix.CLONE_NEWPID, unix.CLONE_NEWNET, unix.CLONE_NEWCGROUP,
}

// Socket families denied outright.
var deniedFamilies = []uint64{unix.AF_PACKET, unix.AF_VSOCK, unix.AF_BLUETOOTH, unix.AF_KEY}

// deniedTTYIoctls are terminal ioctls no agent needs and that act on a
// terminal beyond the caller's own input: TIOCSTI pushes bytes into its
// input queue (keystrokes for whoever reads next), TIOCLINUX pastes and
// reads the console, TIOCSETD changes the line discipline (N_NULL leaves a
// terminal dead after the run), TIOCCONS redirects the console. Job
// control, termios and window-size ioctls stay allowed: shells need them.
var deniedTTYIoctls = []uint64{unix.TIOCSTI, unix.TIOCLINUX, unix.TIOCSETD, unix.TIOCCONS}

// allowedPersonalities are the personality(2) values an agent may pass:
// PER_LINUX (0, the default) and 0xffffffff (the query), compared on the
// low 32 bits as the kernel reads them (prefixProgram). The others switch
// off address-space randomisation, make reads imply exec, map page zero or
// fake another kernel or machine (PER_LINUX32 and UNAME26, which Docker
// allows, only serve 32-bit and pre-2011 programs, which a sandbox cannot
// run anyway).
var allowedPersonalities = []uint32{0, 0xffffffff}

const ipprotoMPTCP = 262 // IPPROTO_MPTCP; Landlock's TCP rules do not cover it

// seccompProgram returns the filter for this architecture (classic BPF,
// native endian). The filters are built from the lists above with
// libseccomp-golang when the code is generated (seccomp_build_test.go,
// `go generate ./runner/sandbox`), not at every start: building one cost
// each sandbox start 0.3-1 ms of CPU, and linking libseccomp a shared
// library more to load. TestSeccompFiltersGenerated rebuilds them and
// fails if the generated file differs. The init loads the filter with
// seccomp(SECCOMP_SET_MODE_FILTER) on the agent's thread only.
func seccompProgram() ([]byte, error) {
	f, ok := seccompFilters[runtime.GOARCH]
	if !ok {
		return nil, fmt.Errorf("no filter for %s: add it to seccompArches in seccomp_build_test.go and run `go generate ./runner/sandbox`", runtime.GOARCH)
	}
	return []byte(f), nil
}
