package sandbox

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"

	seccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Seccomp return values the tests expect.
const (
	retAllow  = unix.SECCOMP_RET_ALLOW
	retEPERM  = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
	retENOSYS = unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)
	retKill   = unix.SECCOMP_RET_KILL_PROCESS
)

// filterVM runs one generated filter (seccomp_bpf_gen.go) on made-up
// system calls, in x/net/bpf's classic BPF interpreter.
type filterVM struct {
	vm    *bpf.VM
	arch  seccomp.ScmpArch
	audit uint32
}

func newFilterVM(t *testing.T, goarch string) *filterVM {
	t.Helper()
	raw := []byte(seccompFilters[goarch])
	if len(raw) == 0 || len(raw)%8 != 0 {
		t.Fatalf("%s: no filter, or %d bytes", goarch, len(raw))
	}
	var prog []bpf.Instruction
	for i := 0; i < len(raw); i += 8 {
		prog = append(prog, bpf.RawInstruction{
			Op: binary.LittleEndian.Uint16(raw[i:]), Jt: raw[i+2], Jf: raw[i+3], K: binary.LittleEndian.Uint32(raw[i+4:]),
		}.Disassemble())
	}
	vm, err := bpf.NewVM(prog)
	if err != nil {
		t.Fatalf("%s: %v", goarch, err)
	}
	arch := seccompArches[goarch]
	return &filterVM{vm: vm, arch: arch, audit: auditArch[arch]}
}

// nr is name's number on the VM's architecture (-1: none there).
func (f *filterVM) nr(t *testing.T, name string) int {
	t.Helper()
	sc, err := seccomp.GetSyscallFromNameByArch(name, f.arch)
	if err != nil {
		return -1
	}
	return int(sc)
}

// run returns the filter's action for syscall number nr with args, from
// architecture audit. struct seccomp_data is little-endian on both
// architectures; the interpreter loads words big-endian, so each 32-bit
// word is stored swapped (the filter only ever loads aligned words).
func (f *filterVM) run(t *testing.T, audit uint32, nr uint32, args ...uint64) uint32 {
	t.Helper()
	data := make([]byte, 64)
	binary.BigEndian.PutUint32(data[0:], nr)
	binary.BigEndian.PutUint32(data[4:], audit)
	for i, a := range args {
		off := 16 + 8*i
		binary.BigEndian.PutUint32(data[off:], uint32(a))
		binary.BigEndian.PutUint32(data[off+4:], uint32(a>>32))
	}
	ret, err := f.vm.Run(data)
	if err != nil {
		t.Fatal(err)
	}
	return uint32(ret)
}

const hi = uint64(1) << 32 // an upper bit: the kernel ignores it in an int

// TestSeccompFilterDecisions runs every rule of both generated filters,
// with and without upper bits set in int arguments (the kernel reads 32
// bits of an int, seccomp sees 64), and the syscall numbers above
// lastReviewedSyscall.
func TestSeccompFilterDecisions(t *testing.T) {
	for _, goarch := range []string{"amd64", "arm64"} {
		t.Run(goarch, func(t *testing.T) {
			f := newFilterVM(t, goarch)
			last := uint32(f.nr(t, lastReviewedSyscall))
			tests := []struct {
				name    string
				syscall string
				args    []uint64
				want    uint32
			}{
				{"vsock", "socket", []uint64{unix.AF_VSOCK, unix.SOCK_STREAM, 0}, retEPERM},
				{"vsock high bits", "socket", []uint64{unix.AF_VSOCK | hi, unix.SOCK_STREAM, 0}, retEPERM},
				{"packet high bits", "socket", []uint64{unix.AF_PACKET | hi, unix.SOCK_RAW, 0x300}, retEPERM},
				{"bluetooth high bits", "socket", []uint64{unix.AF_BLUETOOTH | 0xffffffff00000000, unix.SOCK_STREAM, 0}, retEPERM},
				{"af_key high bits", "socket", []uint64{unix.AF_KEY | hi, unix.SOCK_RAW, 2}, retEPERM},
				{"mptcp", "socket", []uint64{unix.AF_INET, unix.SOCK_STREAM, ipprotoMPTCP}, retEPERM},
				{"mptcp high bits", "socket", []uint64{unix.AF_INET, unix.SOCK_STREAM, ipprotoMPTCP | hi}, retEPERM},
				{"mptcp6 high bits everywhere", "socket", []uint64{unix.AF_INET6 | hi, unix.SOCK_STREAM | hi, ipprotoMPTCP | hi}, retEPERM},
				{"netlink audit", "socket", []uint64{unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_AUDIT}, retEPERM},
				{"netlink audit family high bits", "socket", []uint64{unix.AF_NETLINK | hi, unix.SOCK_RAW, unix.NETLINK_AUDIT}, retEPERM},
				{"netlink route", "socket", []uint64{unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_ROUTE}, retAllow},
				{"netlink route, family high bits", "socket", []uint64{unix.AF_NETLINK | hi, unix.SOCK_RAW, unix.NETLINK_ROUTE}, retAllow},
				{"netlink route, protocol high bits (fails closed)", "socket", []uint64{unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_ROUTE | hi}, retEPERM},
				{"raw inet high bits", "socket", []uint64{unix.AF_INET | hi, unix.SOCK_RAW | hi, unix.IPPROTO_ICMP}, retEPERM},
				{"raw inet6 high bits", "socket", []uint64{unix.AF_INET6 | hi, unix.SOCK_RAW | unix.SOCK_CLOEXEC, unix.IPPROTO_ICMPV6}, retEPERM},
				{"packet type inet high bits", "socket", []uint64{unix.AF_INET | hi, unix.SOCK_PACKET, 0}, retEPERM},
				{"tcp", "socket", []uint64{unix.AF_INET, unix.SOCK_STREAM | unix.SOCK_CLOEXEC, 0}, retAllow},
				{"tcp6", "socket", []uint64{unix.AF_INET6, unix.SOCK_STREAM, unix.IPPROTO_TCP}, retAllow},
				{"tcp, family high bits", "socket", []uint64{unix.AF_INET | hi, unix.SOCK_STREAM, 0}, retAllow},
				{"udp", "socket", []uint64{unix.AF_INET, unix.SOCK_DGRAM, 0}, retAllow},
				{"unix", "socket", []uint64{unix.AF_UNIX, unix.SOCK_STREAM, 0}, retAllow},
				{"TIOCSTI", "ioctl", []uint64{0, unix.TIOCSTI, 0}, retEPERM},
				{"TIOCSTI high bits", "ioctl", []uint64{0, unix.TIOCSTI | hi, 0}, retEPERM},
				{"TIOCLINUX high bits", "ioctl", []uint64{0, unix.TIOCLINUX | 0xffffffff00000000, 0}, retEPERM},
				{"TIOCSETD", "ioctl", []uint64{1, unix.TIOCSETD, 0}, retEPERM},
				{"TIOCCONS", "ioctl", []uint64{1, unix.TIOCCONS | hi, 0}, retEPERM},
				{"TIOCSCTTY (the init's --tty exec)", "ioctl", []uint64{0, unix.TIOCSCTTY, 0}, retAllow},
				{"TIOCSPGRP (job control)", "ioctl", []uint64{0, unix.TIOCSPGRP, 0}, retAllow},
				{"TIOCGWINSZ", "ioctl", []uint64{0, unix.TIOCGWINSZ, 0}, retAllow},
				{"TIOCSWINSZ", "ioctl", []uint64{0, unix.TIOCSWINSZ, 0}, retAllow},
				{"TCSETS", "ioctl", []uint64{0, unix.TCSETS, 0}, retAllow},
				{"FIONREAD", "ioctl", []uint64{3, unix.TIOCINQ, 0}, retAllow},
				{"prlimit self", "prlimit64", []uint64{0, unix.RLIMIT_NOFILE, 0, 1}, retAllow},
				{"prlimit init", "prlimit64", []uint64{1, unix.RLIMIT_NOFILE, 1, 0}, retEPERM},
				{"prlimit self, high bits (fails closed)", "prlimit64", []uint64{hi, unix.RLIMIT_NOFILE, 1, 0}, retEPERM},
				{"personality query", "personality", []uint64{0xffffffff}, retAllow},
				{"personality query as -1", "personality", []uint64{^uint64(0)}, retAllow},
				{"personality PER_LINUX", "personality", []uint64{0}, retAllow},
				{"personality PER_LINUX, high bits", "personality", []uint64{hi}, retAllow},
				{"personality ADDR_NO_RANDOMIZE (0x0040000)", "personality", []uint64{0x0040000}, retEPERM},
				{"personality READ_IMPLIES_EXEC, high bits", "personality", []uint64{0x0400000 | hi}, retEPERM},
				{"personality PER_LINUX32 (8)", "personality", []uint64{8}, retEPERM},
				{"personality all but one bit", "personality", []uint64{0xfffffffe}, retEPERM},
				{"fanotify_init", "fanotify_init", []uint64{0, 0}, retEPERM},
				{"modify_ldt", "modify_ldt", []uint64{0, 0, 0}, retEPERM},
				{"pidfd_getfd", "pidfd_getfd", []uint64{3, 0, 0}, retEPERM},
				{"unshare user, high bits", "unshare", []uint64{unix.CLONE_NEWUSER | hi}, retEPERM},
				{"clone newnet, high bits", "clone", []uint64{unix.CLONE_NEWNET | hi | uint64(unix.SIGCHLD)}, retEPERM},
				{"clone thread", "clone", []uint64{unix.CLONE_VM | unix.CLONE_THREAD | unix.CLONE_SIGHAND}, retAllow},
				{"execveat empty path, high bits", "execveat", []uint64{3, 0, 0, 0, unix.AT_EMPTY_PATH | hi}, retEPERM},
				{"clone3", "clone3", nil, retENOSYS},
				{"the last reviewed", lastReviewedSyscall, nil, retAllow},
				{"mount", "mount", nil, retEPERM},
			}
			for _, tc := range tests {
				nr := f.nr(t, tc.syscall)
				if nr < 0 {
					if tc.syscall == "modify_ldt" && goarch != "amd64" {
						continue
					}
					t.Fatalf("%s: no syscall %s on %s", tc.name, tc.syscall, goarch)
				}
				if got := f.run(t, f.audit, uint32(nr), tc.args...); got != tc.want {
					t.Errorf("%s: %s(%#x) = %#x, want %#x", tc.name, tc.syscall, tc.args, got, tc.want)
				}
			}
			// Newer than the review: ENOSYS, up to the x32 bit.
			for _, nr := range []uint32{last + 1, 457, 458, 459, 460, 461, 462, 467, 468, 469, 500, 1000, 0x3fffffff} {
				if got := f.run(t, f.audit, nr); got != retENOSYS {
					t.Errorf("syscall %d (above %s, %d): %#x, want ENOSYS", nr, lastReviewedSyscall, last, got)
				}
			}
			// Another architecture is killed, whatever its number.
			for _, audit := range []uint32{unix.AUDIT_ARCH_I386, unix.AUDIT_ARCH_ARM, unix.AUDIT_ARCH_AARCH64, unix.AUDIT_ARCH_X86_64} {
				if audit == f.audit {
					continue
				}
				for _, nr := range []uint32{0, 457, 1000} {
					if got := f.run(t, audit, nr); got != retKill {
						t.Errorf("arch %#x syscall %d: %#x, want KILL_PROCESS", audit, nr, got)
					}
				}
			}
			if goarch == "amd64" {
				// x32 numbers (the x32 bit set) stay libseccomp's to kill.
				for _, nr := range []uint32{0x40000000, 0x40000000 + 41, 0x40000000 + 1000} {
					if got := f.run(t, f.audit, nr); got != retKill {
						t.Errorf("x32 syscall %#x: %#x, want KILL_PROCESS", nr, got)
					}
				}
			}
		})
	}
}

// TestSeccompPersonality checks the personality rule on values around
// every bit, runs of bits and random ones: allowed exactly when the low 32
// bits are one of allowedPersonalities.
func TestSeccompPersonality(t *testing.T) {
	allowed := map[uint32]bool{}
	for _, v := range allowedPersonalities {
		allowed[v] = true
	}
	var vals []uint64
	for b := 0; b < 64; b++ {
		vals = append(vals, 1<<b, ^uint64(1<<b), 0xffffffff^(1<<b&0xffffffff)|1<<b&^0xffffffff)
		for w := 1; w < 32; w++ { // a run of w set bits from bit b, round the low 32
			run := uint32(1)<<w - 1
			vals = append(vals, uint64(run<<(b%32)|run>>(32-b%32)))
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		vals = append(vals, rng.Uint64(), rng.Uint64()&0xffffffff, rng.Uint64()|0xffffffff, rng.Uint64()&^0xffffffff)
	}
	for _, goarch := range []string{"amd64", "arm64"} {
		f := newFilterVM(t, goarch)
		nr := uint32(f.nr(t, "personality"))
		for _, v := range vals {
			want := uint32(retEPERM)
			if allowed[uint32(v)] {
				want = retAllow
			}
			if got := f.run(t, f.audit, nr, v); got != want {
				t.Fatalf("%s: personality(%#x) = %#x, want %#x", goarch, v, got, want)
			}
		}
	}
}
