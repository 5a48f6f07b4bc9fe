// Package sandbox starts a command inside nemoclaw's kernel isolation stack:
// user (when not root), mount, pid, net, ipc and uts namespaces; a fresh root
// with /sandbox, a private /tmp, a fresh /proc and a minimal /dev; Landlock at
// the highest ABI the kernel has; a seccomp deny list loaded last; no
// capabilities, no_new_privs and resource limits.
//
// The launcher (Start) plans everything in Go — policy to Landlock ruleset,
// the seccomp filter (generated ahead with libseccomp), mounts, ids,
// limits — and compiles it into a flat program of operations. It re-executes the running binary with
// the hidden argument "__sandbox-init" in new namespaces and sends the
// program on an inherited pipe (fd 3). The init is C (nsinit.c) run from an
// ELF constructor before the Go runtime starts, so a sandbox start pays for
// one Go runtime, not two: it executes the program, reports the first
// failing step on a status socket (fd 4), hands back listening sockets
// created inside the sandbox's network namespace (SCM_RIGHTS), forks the
// agent — which drops to its identity and restrictions and execs — and stays
// as the sandbox's pid 1: it reaps orphans, forwards signals to the agent's
// process group and reports its exit status. MaybeInit is the Go half,
// called first thing in main. When the command line will start a sandbox,
// the constructor pre-spawns the init in the launcher's own process, before
// its Go runtime starts, so that namespace creation and the init's fixed
// mount skeleton overlap the launcher's start-up (prespawn.go).
package sandbox
