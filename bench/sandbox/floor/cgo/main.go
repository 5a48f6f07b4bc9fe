// Command cgo is the smallest Go program built like nemoclaw (with cgo, so
// dynamically linked against libc): one C call and exit. bench/sandbox/run.sh
// times it to show what the Go runtime's own start and exit cost here.
package main

// #include <unistd.h>
import "C"

func main() { C.getpid() }
