package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// runNemoclaw runs the built binary with NEMOCLAW_HOME=home and returns
// stdout, stderr and the exit code.
func runNemoclaw(t *testing.T, home string, args ...string) (string, string, int) {
	t.Helper()
	u := &user{t: t, home: home, project: t.TempDir()}
	return u.run("", args...)
}

// TestApplyDefaultBlueprint is the main job: apply the embedded default
// blueprint and run an agent command inside its sandbox.
func TestApplyDefaultBlueprint(t *testing.T) {
	home := t.TempDir()
	out, errOut, code := runNemoclaw(t, home, "blueprint", "apply", "--no-tty", "--",
		"/bin/sh", "-c", `id -un; hostname; echo kept > /sandbox/state; cat /etc/shadow >/dev/null 2>&1 || echo shadow-denied; exit 7`)
	if code != 7 {
		t.Fatalf("exit %d, want the agent's 7\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	for _, want := range []string{"sandbox\n", "agent\n", "shadow-denied"} {
		if !strings.Contains(out, want) {
			t.Errorf("agent output lacks %q:\n%s", want, out)
		}
	}
	// The blueprint's workspace is the agent's state and outlives the run.
	data, err := os.ReadFile(filepath.Join(home, "sandboxes", "agent", "workspace", "state"))
	if err != nil || string(data) != "kept\n" {
		t.Errorf("workspace state after the run: %q, %v", data, err)
	}
	// As root it is nemoclaw's directory made for the agent: the agent's,
	// bound as it is (no idmapped mount).
	if os.Geteuid() == 0 {
		for _, p := range []string{"workspace", "workspace/state"} {
			fi, err := os.Stat(filepath.Join(home, "sandboxes", "agent", p))
			if err != nil {
				t.Fatal(err)
			}
			if st := fi.Sys().(*syscall.Stat_t); st.Uid != 10001 || st.Gid != 10001 {
				t.Errorf("%s is %d:%d on the host, want the agent's 10001:10001", p, st.Uid, st.Gid)
			}
		}
	}
}

func TestApplyLocalBlueprintAndRefusals(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("policies/sandbox.yaml", "version: 1\nfilesystem_policy:\n  include_workdir: true\n  read_only: [/usr, /bin, /lib, /lib64, /etc, /proc]\n  read_write: [/tmp, /dev/null]\n")
	write("blueprint.yaml", `version: "1.2.0"
components:
  sandbox:
    name: local-agent
    command: ["/bin/sh", "-c", "echo from-blueprint $GREETING"]
    env: {GREETING: hello}
  policy: {base: policies/sandbox.yaml}
`)
	home := t.TempDir()
	out, errOut, code := runNemoclaw(t, home, "blueprint", "apply", dir, "--no-tty")
	if code != 0 || !strings.Contains(out, "from-blueprint hello") {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}

	out, _, code = runNemoclaw(t, home, "blueprint", "apply", dir, "--dry-run")
	if code != 0 || !strings.Contains(out, "sandbox    local-agent") {
		t.Errorf("dry run: exit %d\n%s", code, out)
	}

	// A version gate above this nemoclaw refuses with exit code 3 and runs nothing.
	write("blueprint.yaml", `version: "1.3.0"
min_runner_version: "99.0.0"
components:
  sandbox:
    command: ["/bin/sh", "-c", "echo SHOULD-NOT-RUN"]
  policy: {base: policies/sandbox.yaml}
`)
	out, errOut, code = runNemoclaw(t, home, "blueprint", "apply", dir, "--no-tty")
	if code != 3 || strings.Contains(out, "SHOULD-NOT-RUN") || !strings.Contains(errOut, "needs nemoclaw >= 99.0.0") {
		t.Errorf("gate: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}

	// An invalid blueprint is an error that names file and line.
	write("blueprint.yaml", "version: \"1.3.0\"\ncomponents:\n  sandbox: {nmae: x}\n  policy: {base: policies/sandbox.yaml}\n")
	_, errOut, code = runNemoclaw(t, home, "blueprint", "apply", dir, "--no-tty")
	if code != 1 || !strings.Contains(errOut, "blueprint.yaml:3:13") || !strings.Contains(errOut, `unknown field "nmae"`) {
		t.Errorf("invalid: exit %d\nstderr: %s", code, errOut)
	}

	// A bare word that is neither a directory nor a reference is a usage error.
	_, _, code = runNemoclaw(t, home, "blueprint", "apply", "no-such-dir")
	if code != 2 {
		t.Errorf("bad source: exit %d, want 2", code)
	}
}

// TestValidateAndPlanBinary runs the documented first commands on the
// embedded blueprint and NemoClaw's, in text and JSON.
func TestValidateAndPlanBinary(t *testing.T) {
	home := t.TempDir()
	nemo, err := filepath.Abs(filepath.Join("..", "runner", "blueprint", "testdata", "nemoclaw-blueprint"))
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"blueprint", "validate"}, {"blueprint", "validate", "-o", "json"},
		{"blueprint", "plan"}, {"blueprint", "plan", "-o", "json"},
		{"blueprint", "validate", nemo}, {"blueprint", "plan", nemo, "-o", "json"},
		{"doctor"}, {"policy", "show"}, {"completion", "bash"},
	} {
		out, errOut, code := runNemoclaw(t, home, args...)
		if code != 0 || out == "" {
			t.Errorf("%v: exit %d\nstdout: %.300s\nstderr: %s", args, code, out, errOut)
		}
	}
}
