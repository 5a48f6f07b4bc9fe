package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/nemoclaw/nemoclaw/internal/testutil"
	"github.com/nemoclaw/nemoclaw/runner/sandbox"
)

// joinedRuns numbers the sandboxes execJoined starts.
var joinedRuns atomic.Int64

// execJoined runs ARGS through `nemoclaw sandbox exec` in a sandbox of r's
// workspace that `nemoclaw sandbox run --detach` started (the default
// policy; its agent only waits), and returns stdout, stderr and the exit
// code. The launcher's and exec's environment (r.env) is the caller's: it
// must not reach the joined process.
func execJoined(r *sandboxRun, t *testing.T, flags []string, args ...string) (string, string, int) {
	t.Helper()
	if len(flags) > 0 {
		t.Fatalf("execJoined takes no sandbox flags (got %q)", flags)
	}
	name := fmt.Sprintf("joined-%d", joinedRuns.Add(1))
	nc := func(args ...string) *exec.Cmd {
		cmd := exec.Command(Bin("nemoclaw"), args...)
		cmd.Env = append([]string{"NEMOCLAW_HOME=" + r.home, "PATH=" + os.Getenv("PATH")}, r.env...)
		if r.asUser >= 0 {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(r.asUser), Gid: uint32(r.asUser)}}
		}
		return cmd
	}
	if out, stderr, code := runCmd(t, nc("sandbox", "run", "--detach", "--name", name, "--workdir", r.workdir, "--", "sleep", "3600")); code != 0 || out != name+"\n" {
		t.Fatalf("sandbox run --detach: exit %d, %q\n%s", code, out, stderr)
	}
	t.Cleanup(func() { _, _, _ = runCmd(t, nc("sandbox", "destroy", "--force", name)) })
	return runCmd(t, nc(append([]string{"sandbox", "exec", name, "--"}, args...)...))
}

// TestSandboxEscapeThroughExecRoot runs the whole escape suite through
// `nemoclaw sandbox exec` into a running sandbox that root started, with
// the agent's expectations: a joined process can do nothing the agent
// cannot.
func TestSandboxEscapeThroughExecRoot(t *testing.T) {
	requireSandboxKernel(t)
	if os.Geteuid() != 0 {
		testutil.SkipOrFail(t, "the root escape suite needs to run as root")
	}
	runEscapeSuiteVia(t, -1, nil, execJoined)
}

// TestSandboxEscapeThroughExecRootless: the same, from a sandbox an
// unprivileged user started.
func TestSandboxEscapeThroughExecRootless(t *testing.T) {
	requireSandboxKernel(t)
	if !sandbox.Probe().UnprivilegedUserNS {
		testutil.SkipOrFail(t, "unprivileged user namespaces are disabled on this kernel")
	}
	user := -1
	if os.Geteuid() == 0 {
		user = nobody
	}
	runEscapeSuiteVia(t, user, rootlessDifferences, execJoined)
}
