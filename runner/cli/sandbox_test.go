package cli

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestSandboxRunUsage covers `sandbox run` refusals that happen before a
// sandbox starts (the sandbox itself is exercised in runner/sandbox and e2e).
func TestSandboxRunUsage(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	writeFile(t, bad, "version: 1\nfilesystem_policy:\n  read_only: [/usr]\n  bogus: true\n")
	tests := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"no command", []string{"sandbox", "run"}, ExitUsage, "no command given"},
		{"tty and no-tty", []string{"sandbox", "run", "--tty", "--no-tty", "--", "true"}, ExitUsage, "exclude each other"},
		{"bad memory", []string{"sandbox", "run", "--memory", "lots", "--", "true"}, ExitUsage, "--memory"},
		{"bad cpus", []string{"sandbox", "run", "--cpus", "-2", "--", "true"}, ExitUsage, "--cpus"},
		{"bad pids", []string{"sandbox", "run", "--pids", "-3", "--", "true"}, ExitUsage, "--pids"},
		{"zero pids", []string{"sandbox", "run", "--pids", "0", "--", "true"}, ExitUsage, "--pids 0: want at least 1"},
		{"unknown flag", []string{"sandbox", "run", "--nope", "--", "true"}, ExitUsage, "unknown flag"},
		{"invalid policy file", []string{"sandbox", "run", "--policy", bad, "--", "true"}, ExitError, "bogus"},
		{"missing policy file", []string{"sandbox", "run", "--policy", filepath.Join(t.TempDir(), "none.yaml"), "--", "true"}, ExitError, "none.yaml"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, code := run(t, tc.args...)
			if code != tc.code || !strings.Contains(stderr, tc.msg) {
				t.Fatalf("exit %d (want %d), stderr %q (want %q)", code, tc.code, stderr, tc.msg)
			}
		})
	}
}

func TestLoadRunPolicyOverrides(t *testing.T) {
	pol, err := loadRunPolicy(&sandboxRunOpts{memory: "1Gi", pids: 64, cpus: "500m"})
	if err != nil {
		t.Fatal(err)
	}
	if r := pol.Resources; r == nil || r.Memory != "1Gi" || r.Pids != 64 || r.CPU != "500m" {
		t.Fatalf("overrides not applied: %+v", pol.Resources)
	}
	def, err := loadRunPolicy(&sandboxRunOpts{})
	if err != nil {
		t.Fatal(err)
	}
	if def.Resources != nil && def.Resources.Memory == "1Gi" && def.Resources.Pids == 64 {
		t.Fatal("overrides leaked into the shared default policy")
	}
}

func TestLaunchesSandbox(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{[]string{"sandbox", "run", "--", "true"}, true},
		{[]string{"--log-level", "debug", "sandbox", "run", "--", "true"}, true},
		{[]string{"blueprint", "apply", "./bp"}, true},
		{[]string{"blueprint", "plan"}, false},
		{[]string{"version"}, false},
		{[]string{"sandbox"}, false},
		{[]string{"policy", "show", "--", "sandbox", "run"}, false},
		{[]string{"sandbox", "start", "x"}, true},
		{[]string{"__complete", "sandbox", "run", ""}, false},
	} {
		if got := launchesSandbox(tc.args); got != tc.want {
			t.Errorf("launchesSandbox(%q) = %v, want %v", tc.args, got, tc.want)
		}
	}
}
