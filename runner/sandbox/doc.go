// Package sandbox starts a command inside nemoclaw's kernel isolation stack:
// user (when not root), mount, pid, net, ipc and uts namespaces; a fresh root
// with /sandbox, a private /tmp, a fresh /proc and a minimal /dev; Landlock at
// the highest ABI the kernel has; a seccomp deny list loaded last; no
// capabilities, no_new_privs and resource limits.
//
// The launcher (Start) re-executes the running binary with the hidden
// argument "__sandbox-init". MaybeInit, called first thing in main, recognises
// that mode, reads the JSON spec from an inherited pipe (fd 3), builds the
// sandbox step by step, reports the first failing step on a status socket
// (fd 4), hands back listening sockets created inside the sandbox's network
// namespace (SCM_RIGHTS) and then stays as the sandbox's pid 1: it reaps
// orphans, forwards signals to the agent and reports its exit status.
//
// Per-thread state (credentials, the capability bounding set, no_new_privs,
// the Landlock domain and the seccomp filter) is applied on one locked OS
// thread of the init process and inherited only by the agent it forks, so
// the init keeps the rights it needs to reap and to tear the sandbox down.
package sandbox
