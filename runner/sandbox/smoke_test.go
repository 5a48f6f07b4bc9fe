package sandbox

import (
	"bytes"
	"context"
	"testing"

	"github.com/nemoclaw/nemoclaw/runner/policy"
)

func testPolicy() *policy.Policy {
	return &policy.Policy{
		Version: 1,
		Filesystem: &policy.FilesystemPolicy{
			IncludeWorkdir: true,
			ReadOnly:       []string{"/usr", "/lib", "/lib64", "/bin", "/sbin", "/etc", "/proc"},
			ReadWrite:      []string{"/sandbox", "/tmp"},
		},
		Landlock: &policy.LandlockPolicy{Compatibility: policy.BestEffort},
		Process:  &policy.ProcessPolicy{RunAsUser: "sandbox", RunAsGroup: "sandbox"},
	}
}

func TestSmoke(t *testing.T) {
	var out, errb bytes.Buffer
	sb, err := Start(context.Background(), Config{
		Policy: testPolicy(), Home: t.TempDir(),
		Command: []string{"/bin/sh", "-c", "id; hostname; pwd; cat /proc/self/status | grep -E 'Cap|NoNew|Seccomp'; ls /; echo hi > /sandbox/x; cat /sandbox/x; cat /etc/shadow; exit 7"},
		Stdout:  &out, Stderr: &errb, Name: "smoke",
	})
	if err != nil {
		t.Fatal(err)
	}
	code, err := sb.Wait()
	t.Logf("code=%d err=%v\nstdout:\n%s\nstderr:\n%s", code, err, out.String(), errb.String())
	sb.Close()
}
