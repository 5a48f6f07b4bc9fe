package kubernetes

import (
	"fmt"
	"strings"

	"github.com/nemoclaw/nemoclaw/runner/blueprint"
)

// Runtime is the kind of container runtime a RuntimeClass name selects.
type Runtime string

// Runtimes RuntimeKind recognises by name.
const (
	RuntimeDefault Runtime = ""       // runc or crun: the node's kernel
	RuntimeGVisor  Runtime = "gvisor" // runsc: gVisor's user-space kernel
	RuntimeKata    Runtime = "kata"   // Kata Containers: a VM's guest kernel
	RuntimeOther   Runtime = "other"
)

// RuntimeKind guesses the runtime from a RuntimeClass name: RuntimeClasses
// are named by the cluster, but gVisor's and Kata's are conventionally
// "gvisor"/"runsc" and "kata*".
func RuntimeKind(class string) Runtime {
	c := strings.ToLower(class)
	switch {
	case c == "":
		return RuntimeDefault
	case strings.Contains(c, "gvisor") || strings.Contains(c, "runsc"):
		return RuntimeGVisor
	case strings.HasPrefix(c, "kata"):
		return RuntimeKata
	}
	return RuntimeOther
}

// runtimeClassNotes says what a runtime class changes for the blueprint,
// and refuses one that cannot keep its promises: gVisor implements no
// Landlock, so a hard_requirement blueprint cannot run there.
func runtimeClassNotes(class string, b *blueprint.Blueprint) ([]string, error) {
	hard := b.Policy.Landlock.HardRequired()
	switch RuntimeKind(class) {
	case RuntimeGVisor:
		if hard {
			return nil, &RefusalError{Reason: fmt.Sprintf("render: runtime class %q is gVisor, which implements no Landlock, and the blueprint's policy sets landlock.compatibility: hard_requirement (%s); choose runc or Kata for this blueprint, or set best_effort in a blueprint of your own", class, b.PolicyFile)}
		}
		return []string{fmt.Sprintf("runtime class %s (gVisor): Landlock is not available, so best_effort drops the filesystem allow-list (read_only/read_write), Landlock's TCP and scope rules; what remains: gVisor's user-space kernel between the pod and the node, nemoclaw's namespaces, seccomp filter and egress proxy", class)}, nil
	case RuntimeKata:
		return []string{fmt.Sprintf("runtime class %s (Kata): the agent's kernel is the VM's guest kernel; Landlock is what that kernel offers (a hard_requirement blueprint refuses to start if it has none, best_effort says what it dropped at start)", class)}, nil
	case RuntimeOther:
		return []string{fmt.Sprintf("runtime class %s: not one nemoclaw knows; Landlock and user namespaces are whatever its kernel offers (nemoclaw reports it at start)", class)}, nil
	}
	return nil, nil
}
