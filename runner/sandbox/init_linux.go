package sandbox

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// MaybeInit is the Go half of the hidden init mode: call it first thing in
// main. The init itself runs in nsinit.c, from an ELF constructor, before
// the Go runtime starts; it never returns to Go. So when MaybeInit sees
// argv[1] == "__sandbox-init", the constructor did not run (a build without
// cgo), and it reports that on the status socket and exits. Otherwise it
// returns at once.
func MaybeInit() {
	if len(os.Args) < 2 || os.Args[1] != initArg {
		return
	}
	msg := `{"error":{"step":"init","message":"the C init did not run: build nemoclaw with CGO_ENABLED=1"}}`
	_ = unix.Sendmsg(statusFD, []byte(msg), nil, nil, 0)
	fmt.Fprintln(os.Stderr, "nemoclaw: __sandbox-init is internal; build with CGO_ENABLED=1")
	os.Exit(1)
}
