package sandbox

// #cgo CFLAGS: -O2 -Wall -Wno-unused-result
import "C"

// nsinit.c holds the sandbox init; importing "C" compiles and links it, and
// its ELF constructor runs in every process of the binary before the Go
// runtime. It returns at once unless argv[1] is "__sandbox-init" (the exec
// path's init) or the command line will start a sandbox, when it pre-spawns
// the init (see prespawn.go and docs/sandbox.md).
