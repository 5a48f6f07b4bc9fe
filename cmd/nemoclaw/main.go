// Command nemoclaw runs AI agents in a kernel-enforced sandbox from signed,
// versioned blueprints. It only wires: everything lives in runner/.
//
// It does not link the registry and signing code (runner/cli/distcli), whose
// package initialisation would slow every sandbox start: those commands
// re-run the same command line in nemoclaw-dist (see cmd/nemoclaw-dist).
package main

import (
	"os"

	"github.com/nemoclaw/nemoclaw/runner/cli"
	"github.com/nemoclaw/nemoclaw/runner/sandbox"
)

func main() {
	// The sandbox's hidden init mode must run before anything else.
	sandbox.MaybeInit()
	os.Exit(cli.Main())
}
