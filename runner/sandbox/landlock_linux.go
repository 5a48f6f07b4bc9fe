package sandbox

import (
	"golang.org/x/sys/unix"
)

// The Landlock ABI probe. Enforcement happens in nsinit.c, before the Go
// runtime of the init starts; Go-Landlock is not used because it restricts
// every thread of the calling process and links psx's pthread wrapper.

func landlockGetABI() (int, error) {
	r, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, unix.LANDLOCK_CREATE_RULESET_VERSION)
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
}
