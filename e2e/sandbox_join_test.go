package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/nemoclaw/nemoclaw/internal/testutil"
	"github.com/nemoclaw/nemoclaw/runner/sandbox"
)

var (
	joinerOnce sync.Once
	joinerBin  string
	joinerErr  error
)

// buildJoiner compiles e2e/testdata/sandbox/joiner (with cgo: it carries
// the C init) next to the attack helper, where every user can read it.
//
// It stands in for `nemoclaw sandbox run --detach` + `nemoclaw sandbox
// exec` until those exist: then execJoined runs them instead, and this
// goes.
func buildJoiner(t *testing.T) string {
	t.Helper()
	dir := filepath.Dir(buildAttack(t))
	joinerOnce.Do(func() {
		tmp := filepath.Join(dir, fmt.Sprintf("joiner.%d", os.Getpid()))
		cmd := exec.Command("go", "build", "-o", tmp, "./testdata/sandbox/joiner")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			joinerErr = fmt.Errorf("build joiner: %v\n%s", err, out)
			return
		}
		joinerBin = filepath.Join(dir, "joiner")
		joinerErr = os.Rename(tmp, joinerBin)
	})
	if joinerErr != nil {
		t.Fatal(joinerErr)
	}
	return joinerBin
}

// execJoined runs ARGS as a process joined to a running sandbox of r's
// workspace (the default policy; its agent only waits), as `nemoclaw
// sandbox exec` will, and returns stdout, stderr and the exit code. The
// launcher's environment (r.env) is the caller's: it must not reach the
// joined process.
func execJoined(r *sandboxRun, t *testing.T, flags []string, args ...string) (string, string, int) {
	t.Helper()
	if len(flags) > 0 {
		t.Fatalf("execJoined takes no sandbox flags (got %q)", flags)
	}
	all := append([]string{"-workdir", r.workdir, "-home", r.home, "--"}, args...)
	cmd := exec.Command(buildJoiner(t), all...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, r.env...)
	if r.asUser >= 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(r.asUser), Gid: uint32(r.asUser)}}
	}
	return runCmd(t, cmd)
}

// TestSandboxEscapeThroughExecRoot runs the whole escape suite as a process
// joined to a running sandbox that root started, with the agent's
// expectations: a joined process can do nothing the agent cannot.
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

// TestSandboxJoinedStatus: a joined process's stdin, stdout and exit status
// pass through, and a command that cannot run exits 127 or 126, as root
// and rootless.
func TestSandboxJoinedStatus(t *testing.T) {
	requireSandboxKernel(t)
	asEachLauncher(t, func(t *testing.T, uid int) {
		r := newSandboxRun(t, uid)
		for _, tc := range []struct {
			flags []string
			args  []string
			in    string
			out   string
			code  int
		}{
			{nil, []string{"sh", "-c", "cat; exit 5"}, "through\n", "through\n", 5},
			{nil, []string{"no-such-command"}, "", "", 127},
			{nil, []string{"/etc/passwd"}, "", "", 126},
			// A terminal of its own, its controlling one (/dev/tty opens).
			{[]string{"-tty"}, []string{"sh", "-c", "test -t 0 && : </dev/tty && stty size && exit 3"}, "", "24 80\r\n", 3},
		} {
			all := append(append([]string{"-workdir", r.workdir, "-home", r.home}, tc.flags...), "--")
			all = append(all, tc.args...)
			cmd := exec.Command(buildJoiner(t), all...)
			cmd.Stdin = strings.NewReader(tc.in)
			if uid >= 0 {
				cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
			}
			out, stderr, code := runCmd(t, cmd)
			if out != tc.out || code != tc.code {
				t.Errorf("%q: stdout %q, exit %d; want %q, %d\nstderr: %s", tc.args, out, code, tc.out, tc.code, stderr)
			}
		}
	})
}
