package sandbox

import (
	"fmt"
	"io"
	"os"
	"sync"

	seccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"
)

// deniedSyscalls fail with EPERM inside the sandbox: kernel attack surface
// and everything that could leave or reshape the sandbox. Names unknown to
// the running architecture are skipped.
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
}

// nsCloneFlags are the namespace-creating flags of clone and unshare.
var nsCloneFlags = []uint64{
	unix.CLONE_NEWNS, unix.CLONE_NEWUTS, unix.CLONE_NEWIPC, unix.CLONE_NEWUSER,
	unix.CLONE_NEWPID, unix.CLONE_NEWNET, unix.CLONE_NEWCGROUP,
}

// Socket families denied outright.
var deniedFamilies = []uint64{unix.AF_PACKET, unix.AF_VSOCK, unix.AF_BLUETOOTH, unix.AF_KEY}

const ipprotoMPTCP = 262 // IPPROTO_MPTCP; Landlock's TCP rules do not cover it

var (
	seccompOnce sync.Once
	seccompBPF  []byte
	seccompErr  error
)

// seccompProgram returns the compiled filter (classic BPF, native endian),
// built once per process with libseccomp. The init loads it with
// seccomp(SECCOMP_SET_MODE_FILTER) on the agent's thread only.
func seccompProgram() ([]byte, error) {
	seccompOnce.Do(func() { seccompBPF, seccompErr = buildSeccomp() })
	return seccompBPF, seccompErr
}

func buildSeccomp() ([]byte, error) {
	f, err := seccomp.NewFilter(seccomp.ActAllow)
	if err != nil {
		return nil, fmt.Errorf("seccomp: new filter: %w", err)
	}
	defer f.Release()
	// Other architectures (i386 via int 0x80, x32) have other syscall
	// numbers; kill them rather than let them bypass the list.
	if err := f.SetBadArchAction(seccomp.ActKillProcess); err != nil {
		return nil, fmt.Errorf("seccomp: bad arch action: %w", err)
	}
	eperm := seccomp.ActErrno.SetReturnCode(int16(unix.EPERM))
	enosys := seccomp.ActErrno.SetReturnCode(int16(unix.ENOSYS))
	rule := func(name string, act seccomp.ScmpAction, conds ...seccomp.ScmpCondition) error {
		sc, err := seccomp.GetSyscallFromName(name)
		if err != nil {
			return nil // not on this architecture
		}
		if len(conds) == 0 {
			err = f.AddRule(sc, act)
		} else {
			err = f.AddRuleConditional(sc, act, conds)
		}
		if err != nil {
			return fmt.Errorf("seccomp: rule %s: %w", name, err)
		}
		return nil
	}
	cond := func(arg uint, op seccomp.ScmpCompareOp, v ...uint64) seccomp.ScmpCondition {
		c, err := seccomp.MakeCondition(arg, op, v...)
		if err != nil {
			panic(err) // static arguments; cannot fail
		}
		return c
	}
	for _, name := range deniedSyscalls {
		if err := rule(name, eperm); err != nil {
			return nil, err
		}
	}
	// clone3 passes its flags in memory, out of seccomp's sight: ENOSYS
	// makes libc fall back to clone, whose flags we can check.
	if err := rule("clone3", enosys); err != nil {
		return nil, err
	}
	for _, fl := range nsCloneFlags {
		if err := rule("clone", eperm, cond(0, seccomp.CompareMaskedEqual, fl, fl)); err != nil {
			return nil, err
		}
	}
	for _, fl := range append(nsCloneFlags, unix.CLONE_NEWTIME) {
		if err := rule("unshare", eperm, cond(0, seccomp.CompareMaskedEqual, fl, fl)); err != nil {
			return nil, err
		}
	}
	// Fileless exec: execveat(fd, "", ..., AT_EMPTY_PATH) runs a memfd.
	if err := rule("execveat", eperm, cond(4, seccomp.CompareMaskedEqual, unix.AT_EMPTY_PATH, unix.AT_EMPTY_PATH)); err != nil {
		return nil, err
	}
	for _, fam := range deniedFamilies {
		if err := rule("socket", eperm, cond(0, seccomp.CompareEqual, fam)); err != nil {
			return nil, err
		}
	}
	// Netlink: only NETLINK_ROUTE (ip, getifaddrs) is allowed.
	if err := rule("socket", eperm, cond(0, seccomp.CompareEqual, unix.AF_NETLINK), cond(2, seccomp.CompareNotEqual, unix.NETLINK_ROUTE)); err != nil {
		return nil, err
	}
	if err := rule("socket", eperm, cond(2, seccomp.CompareEqual, ipprotoMPTCP)); err != nil {
		return nil, err
	}
	for _, fam := range []uint64{unix.AF_INET, unix.AF_INET6} {
		if err := rule("socket", eperm, cond(0, seccomp.CompareEqual, fam), cond(1, seccomp.CompareMaskedEqual, 0xf, unix.SOCK_RAW)); err != nil {
			return nil, err
		}
		if err := rule("socket", eperm, cond(0, seccomp.CompareEqual, fam), cond(1, seccomp.CompareMaskedEqual, 0xf, unix.SOCK_PACKET)); err != nil {
			return nil, err
		}
	}
	// libseccomp 2.5 (Debian 12) has no in-memory export: go through a memfd.
	mfd, err := unix.MemfdCreate("nemoclaw-seccomp", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("seccomp: export: %w", err)
	}
	mf := os.NewFile(uintptr(mfd), "seccomp-bpf")
	defer mf.Close()
	if err := f.ExportBPF(mf); err != nil {
		return nil, fmt.Errorf("seccomp: export: %w", err)
	}
	if _, err := mf.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("seccomp: export: %w", err)
	}
	bpf, err := io.ReadAll(mf)
	if err != nil {
		return nil, fmt.Errorf("seccomp: export: %w", err)
	}
	return bpf, nil
}
