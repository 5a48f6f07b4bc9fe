// Command linked links everything `nemoclaw` links (runner/cli and all it
// imports) and returns from main at once. bench/sandbox/run.sh times it: the
// cost of starting and ending that Go process, before a line of nemoclaw's
// own code runs, is a floor under `nemoclaw sandbox run`.
package main

import (
	_ "github.com/nemoclaw/nemoclaw/runner/cli"
)

func main() {}
