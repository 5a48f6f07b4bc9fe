// Command startonly starts one sandbox running argv[1:] through the
// runner/sandbox library with a literal default-like policy and exits with
// its status. bench/sandbox/run.sh times it next to the full CLI to separate
// the sandbox's own cost from the CLI's (cobra, policy loading, egress).
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/nemoclaw/nemoclaw/runner/policy"
	"github.com/nemoclaw/nemoclaw/runner/sandbox"
)

func main() {
	sandbox.MaybeInit()
	home, err := os.MkdirTemp("", "nemoclaw-startonly-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "startonly:", err)
		os.Exit(1)
	}
	defer os.RemoveAll(home)
	pol := &policy.Policy{
		Version: 1,
		Filesystem: &policy.FilesystemPolicy{
			IncludeWorkdir: true,
			ReadOnly:       []string{"/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc", "/proc"},
			ReadWrite:      []string{"/tmp"},
		},
		Process: &policy.ProcessPolicy{RunAsUser: "sandbox", RunAsGroup: "sandbox"},
	}
	sb, err := sandbox.Start(context.Background(), sandbox.Config{
		Policy: pol, Home: home, Command: os.Args[1:],
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "startonly:", err)
		os.Exit(1)
	}
	code, err := sb.Wait()
	sb.Close()
	if err != nil {
		fmt.Fprintln(os.Stderr, "startonly:", err)
	}
	os.RemoveAll(home)
	os.Exit(code)
}
