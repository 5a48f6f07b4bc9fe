// Package commands is the table of the commands that live in nemoclaw-dist:
// their place, usage line and short description, as plain data. runner/cli
// builds the lean nemoclaw's delegating stubs from it and
// runner/cli/distcli the real commands, so both executables' help agree by
// construction. It imports nothing: the lean nemoclaw links it.
package commands

// Command is one command of nemoclaw-dist.
type Command struct {
	// Parent is "blueprint" for a subcommand of `nemoclaw blueprint`, ""
	// for a top-level command.
	Parent string
	// Use and Short are the cobra fields of the same names.
	Use, Short string
}

// The commands, by name.
var (
	BlueprintPush   = Command{"blueprint", "push DIR REF", "Pack a blueprint directory deterministically and push it to an OCI registry"}
	BlueprintPull   = Command{"blueprint", "pull REF", "Fetch, verify and cache a blueprint by tag, digest or semver constraint; pin it in nemoclaw.lock"}
	BlueprintUpdate = Command{"blueprint", "update [REF]", "Move nemoclaw.lock to the newest version matching each entry's constraint"}
	BlueprintList   = Command{"blueprint", "list", "Show cached blueprints and the ones pinned in nemoclaw.lock"}
	BlueprintSign   = Command{"blueprint", "sign REF --key PREFIX.key", "Sign a pushed blueprint and push the Sigstore bundle as its OCI referrer"}
	BlueprintVerify = Command{"blueprint", "verify REF (--key PREFIX.pub | --certificate-identity ID --certificate-oidc-issuer URL) [--trusted-root FILE]", "Check a blueprint's digests and signature in the registry without pulling it"}
	Key             = Command{"", "key", "Manage blueprint signing keys"}
	Registry        = Command{"", "registry", "Log in to and out of OCI registries"}
	Trust           = Command{"", "trust", "Manage which keys and keyless identities are trusted for which repositories"}
	BlueprintRender = Command{"blueprint", "render [DIR|REF] --target kubernetes", "Render a verified blueprint as Kubernetes objects (agent-sandbox) that run it under the same policy"}
)

// All is every command nemoclaw-dist adds to the tree nemoclaw has.
var All = []Command{BlueprintPush, BlueprintPull, BlueprintUpdate, BlueprintList, BlueprintSign, BlueprintVerify, Key, Registry, Trust, BlueprintRender}
