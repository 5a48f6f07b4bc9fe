package sandbox

// #cgo CFLAGS: -O2 -Wall -Wno-unused-result
import "C"

// nsinit.c holds the sandbox init; importing "C" compiles and links it, and
// its ELF constructor runs in every process of the binary before the Go
// runtime (returning at once unless argv[1] is "__sandbox-init").
