package cli

import (
	"strings"
	"testing"
)

// TestSandboxExecRefusals: usage errors exit 2; a sandbox that does not
// exist or is not running exits 1 naming what to do (the running path is
// in e2e: TestSandboxExecCLI, TestSandboxExecTTY).
func TestSandboxExecRefusals(t *testing.T) {
	home := t.TempDir()
	writeFile(t, home+"/sandboxes/stopped/supervisor.json", `{"v":1,"name":"stopped","state":"stopped","exit_code":0}`)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"sandbox", "exec", "stopped"}, ExitUsage, "want NAME -- COMMAND"},
		{[]string{"sandbox", "exec", "stopped", "true"}, ExitUsage, "want NAME -- COMMAND"},
		{[]string{"sandbox", "exec", "stopped", "--"}, ExitUsage, "want NAME -- COMMAND"},
		{[]string{"sandbox", "exec", "Bad/Name", "--", "true"}, ExitUsage, "sandbox name"},
		{[]string{"sandbox", "exec", "none", "--", "true"}, ExitError, "no such sandbox"},
		{[]string{"sandbox", "exec", "stopped", "--", "true"}, ExitError, "nemoclaw sandbox start stopped"},
		{[]string{"sandbox", "connect", "stopped"}, ExitError, "not running"},
		{[]string{"sandbox", "connect"}, ExitUsage, ""},
	} {
		_, errOut, code := runHome(t, home, tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("%q: exit %d, %q; want %d and %q", tc.args, code, errOut, tc.code, tc.want)
		}
	}
}
