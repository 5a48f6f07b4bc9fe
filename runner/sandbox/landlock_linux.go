package sandbox

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// Raw Landlock system calls. We do not use Go-Landlock because its
// enforcement restricts every OS thread of the process (AllThreadsSyscall
// through psx, or ABI 8's TSYNC), while the init must restrict only the
// thread that forks the agent; and its syscall package pulls psx's cgo
// pthread_create wrapper into the whole binary.

const landlockRuleNetPort = 2 // LANDLOCK_RULE_NET_PORT

// landlockNetPortAttr is struct landlock_net_port_attr.
type landlockNetPortAttr struct {
	AllowedAccess uint64
	Port          uint64
}

func landlockGetABI() (int, error) {
	r, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, unix.LANDLOCK_CREATE_RULESET_VERSION)
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
}

func landlockCreateRuleset(attr *unix.LandlockRulesetAttr) (int, error) {
	r, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, uintptr(unsafe.Pointer(attr)), unsafe.Sizeof(*attr), 0)
	if errno != 0 {
		return -1, errno
	}
	return int(r), nil
}

func landlockAddPathRule(rulesetFD int, access uint64, fd int) error {
	attr := unix.LandlockPathBeneathAttr{Allowed_access: access, Parent_fd: int32(fd)}
	_, _, errno := unix.Syscall6(unix.SYS_LANDLOCK_ADD_RULE, uintptr(rulesetFD), unix.LANDLOCK_RULE_PATH_BENEATH, uintptr(unsafe.Pointer(&attr)), 0, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

func landlockAddPortRule(rulesetFD int, access, port uint64) error {
	attr := landlockNetPortAttr{AllowedAccess: access, Port: port}
	_, _, errno := unix.Syscall6(unix.SYS_LANDLOCK_ADD_RULE, uintptr(rulesetFD), landlockRuleNetPort, uintptr(unsafe.Pointer(&attr)), 0, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// landlockRestrictThread enforces the ruleset on the calling thread only.
func landlockRestrictThread(rulesetFD int) error {
	_, _, errno := unix.Syscall(unix.SYS_LANDLOCK_RESTRICT_SELF, uintptr(rulesetFD), 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}
