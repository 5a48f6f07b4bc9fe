// Command nemoclaw-dist is nemoclaw with every command, including the
// registry and signing ones (blueprint push, pull, update, list, sign,
// verify, key, registry, and blueprint apply REF). Users never call it by
// name: nemoclaw replaces itself with it, with the same command line, for
// those commands. It only wires: everything lives in runner/.
package main

import (
	"os"

	"github.com/nemoclaw/nemoclaw/runner/cli"
	_ "github.com/nemoclaw/nemoclaw/runner/cli/distcli" // the registry and signing commands
	"github.com/nemoclaw/nemoclaw/runner/sandbox"
)

func main() {
	// The sandbox's hidden init mode must run before anything else
	// (`blueprint apply REF` starts sandboxes from this executable).
	sandbox.MaybeInit()
	os.Exit(cli.Main())
}
