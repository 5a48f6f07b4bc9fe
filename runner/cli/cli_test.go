package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/nemoclaw/nemoclaw/runner/cli/distcli/commands"
)

// nemoclawFixture is NemoClaw's real blueprint, copied unchanged.
var nemoclawFixture = filepath.Join("..", "blueprint", "testdata", "nemoclaw-blueprint")

// shape2026Fixture is nemoclaw's own blueprint written in the shape of
// NemoClaw's mid-2026 files (see runner/blueprint's TestNemoClaw2026Shape).
var shape2026Fixture = filepath.Join("..", "blueprint", "testdata", "nemoclaw-shaped-2026")

// run executes nemoclaw with args and returns stdout, stderr and exit code.
func run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	t.Setenv("NEMOCLAW_HOME", t.TempDir())
	err := Execute(context.Background(), Options{Args: args, Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb})
	return out.String(), errb.String(), ExitCode(err)
}

func TestValidateAndPlan(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
		out  []string
	}{
		{"validate default", []string{"blueprint", "validate"}, 0, []string{"embedded:default is valid", "version 0.1.0"}},
		{"validate nemoclaw", []string{"blueprint", "validate", nemoclawFixture}, 0, []string{"is valid", "findings", "min_openshell_version"}},
		{"validate json", []string{"blueprint", "validate", nemoclawFixture, "-o", "json"}, 0, []string{`"valid": true`, `"version": "0.1.0"`}},
		{"validate invalid", []string{"blueprint", "validate", filepath.Join("testdata", "nope")}, 1, nil},
		{"plan default", []string{"blueprint", "plan"}, 0, []string{"sandbox    agent", "inference  profile nvidia", "preflight", "landlock"}},
		{"plan nemoclaw", []string{"blueprint", "plan", nemoclawFixture, "--profile", "vllm"}, 0, []string{"profile vllm", "openclaw-sandbox.yaml", "api.anthropic.com:443"}},
		{"plan nemoclaw json", []string{"blueprint", "plan", nemoclawFixture, "-o", "json"}, 0, []string{`"profile": "default"`, `"preflight"`}},
		{"plan unknown profile", []string{"blueprint", "plan", "--profile", "nope"}, 2, nil},
		{"policy show", []string{"policy", "show"}, 0, []string{"version: 1", "enforcement: enforce", "inference.local"}},
		{"policy show json", []string{"policy", "show", nemoclawFixture, "-o", "json"}, 0, []string{`"network_policies"`, `"nim_service"`}},
		{"policy validate preset", []string{"policy", "validate", filepath.Join(nemoclawFixture, "policies", "presets", "telegram.yaml")}, 0, []string{"preset", "is valid"}},
		{"policy validate invalid", []string{"policy", "validate", filepath.Join("..", "policy", "testdata", "invalid", "tld-wildcard.yaml")}, 1, nil},
		{"policy validate tcp access read-only invalid", []string{"policy", "validate", filepath.Join("..", "policy", "testdata", "invalid", "tcp-with-access-read-only.yaml")}, 1, nil},
		{"policy validate aliases invalid", []string{"policy", "validate", filepath.Join("..", "policy", "testdata", "invalid", "aliases-80.yaml")}, 1, nil},
		// Issue 14: a blueprint in the shape of NemoClaw's mid-2026 files.
		{"validate nemoclaw 2026 shape", []string{"blueprint", "validate", shape2026Fixture}, 0, []string{"is valid", "policies/openclaw-sandbox.yaml", `tier "builder" is kept and reported`, "websocket_credential_rewrite is kept but not enforced"}},
		{"plan nemoclaw 2026 shape", []string{"blueprint", "plan", shape2026Fixture, "--profile", "vllm"}, 0, []string{"profile vllm", "10.200.0.2:18789 rest enforce access=full tunnel (tls=skip, not inspected)", "a second policy beside the base"}},
		{"policy validate tiers", []string{"policy", "validate", filepath.Join(shape2026Fixture, "policies", "tiers.yaml")}, 0, []string{"tiers file", "is valid"}},
		{"policy validate permissive", []string{"policy", "validate", filepath.Join(shape2026Fixture, "policies", "openclaw-sandbox-permissive.yaml")}, 0, []string{"is valid", "request_body_credential_rewrite is kept but not enforced"}},
		{"policy validate tunnel preset", []string{"policy", "validate", filepath.Join(shape2026Fixture, "policies", "presets", "chat-relay.yaml")}, 0, []string{"preset", "is valid"}},
		{"bad output", []string{"blueprint", "plan", "-o", "xml"}, 2, nil},
		{"unknown flag", []string{"blueprint", "validate", "--bogus"}, 2, nil},
		{"too many args", []string{"blueprint", "validate", "a", "b"}, 2, nil},
		{"version", []string{"version"}, 0, []string{"nemoclaw "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := run(t, tt.args...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, out, errOut)
			}
			for _, w := range tt.out {
				if !strings.Contains(out, w) {
					t.Errorf("stdout lacks %q:\n%s", w, out)
				}
			}
			if tt.code != 0 && errOut == "" && !strings.Contains(tt.name, "invalid") {
				t.Error("a failure printed no explanation")
			}
			if strings.Contains(errOut, "goroutine ") || strings.Contains(errOut, "panic") {
				t.Errorf("stack trace on stderr: %s", errOut)
			}
		})
	}
}

func TestPlanJSONIsStructured(t *testing.T) {
	out, _, code := run(t, "blueprint", "plan", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	var p struct {
		Sandbox struct{ Name string }
		Policy  struct {
			Network []struct{ Key string }
		}
		Inference struct{ Profile, Plugin string }
	}
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatalf("plan JSON: %v\n%s", err, out)
	}
	if p.Sandbox.Name != "agent" || p.Inference.Plugin != "nemoclaw-inference-nvidia" || len(p.Policy.Network) != 1 {
		t.Errorf("plan JSON = %+v", p)
	}
}

func TestInvalidValidateJSONLocatesErrors(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "blueprint.yaml"), "version: \"1.0.0\"\nprofiles: [x]\ncomponents:\n  policy: {base: policies/p.yaml}\n")
	writeFile(t, filepath.Join(dir, "policies", "p.yaml"), "version: 1\n")
	out, _, code := run(t, "blueprint", "validate", dir, "-o", "json")
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	var res validationResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	if res.Valid || len(res.Errors) == 0 || res.Errors[0].Line != 2 || !strings.Contains(res.Errors[0].Message, `profile "x"`) {
		t.Errorf("result = %+v", res)
	}
}

// TestHelpEverywhere runs --help on every command of the lean tree: each
// must succeed and say what it does, except the stubs of nemoclaw-dist's
// commands, whose help is nemoclaw-dist's (here: not found, exit 1; see
// TestDelegation and the e2e tests for the real thing).
func TestHelpEverywhere(t *testing.T) {
	root := NewRoot(&App{Home: t.TempDir()})
	var walk func(c *cobra.Command)
	var paths [][]string
	stubs := map[string]bool{}
	walk = func(c *cobra.Command) {
		if c.Hidden {
			return
		}
		if c.Annotations[DelegatedAnnotation] != "" {
			stubs[c.CommandPath()] = true
			if c.Short == "" || c.HasSubCommands() {
				t.Errorf("stub %s: no short description, or subcommands", c.CommandPath())
			}
		}
		paths = append(paths, strings.Fields(c.CommandPath())[1:])
		// pflag shows a `quoted` word in a usage as the flag's value
		// name: "--approvals nemoclaw policy approvals NAME".
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			if strings.Contains(f.Usage, "`") {
				t.Errorf("%s --%s: a backquote in its usage becomes the value's name in --help", c.CommandPath(), f.Name)
			}
		})
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(root)
	if len(paths) < 8 {
		t.Fatalf("only %d commands found", len(paths))
	}
	if len(stubs) != len(commands.All) {
		t.Errorf("%d stubs in the tree, want %d", len(stubs), len(commands.All))
	}
	for _, p := range paths {
		out, errOut, code := run(t, append(p, "--help")...)
		if stubs[strings.Join(append([]string{"nemoclaw"}, p...), " ")] {
			if code != ExitError || !strings.Contains(errOut, "needs nemoclaw-dist") {
				t.Errorf("%v --help without nemoclaw-dist: exit %d: %s", p, code, errOut)
			}
			continue
		}
		if code != 0 {
			t.Errorf("%v --help: exit %d: %s", p, code, errOut)
		}
		if !strings.Contains(out, "Usage:") {
			t.Errorf("%v --help printed no usage", p)
		}
	}
}

func TestExitCodes(t *testing.T) {
	if ExitCode(nil) != 0 || ExitCode(Usage(errString("x"))) != 2 || ExitCode(Refused(errString("x"))) != 3 || ExitCode(errString("x")) != 1 {
		t.Error("exit code mapping is wrong")
	}
	if ExitCode(ExitStatus(42)) != 42 || ExitStatus(0) != nil {
		t.Error("ExitStatus does not carry the code")
	}
}

type errString string

func (e errString) Error() string { return string(e) }

func TestTermWriterRawMode(t *testing.T) {
	var b bytes.Buffer
	w := &termWriter{w: &b}
	_, _ = w.Write([]byte("a\nb\n"))
	w.raw.Store(true)
	n, err := w.Write([]byte("c\nd\n"))
	if err != nil || n != 4 {
		t.Fatalf("Write = %d, %v; want 4 (the caller's length)", n, err)
	}
	if b.String() != "a\nb\nc\r\nd\r\n" {
		t.Errorf("got %q", b.String())
	}
}

// TestSandboxRootPruned runs `sandbox …` command lines through both the
// pruned tree Execute builds for them and the whole tree: output, errors
// and exit codes must not differ.
func TestSandboxRootPruned(t *testing.T) {
	for _, args := range [][]string{
		{"sandbox"},
		{"sandbox", "--help"},
		{"sandbox", "run", "--help"},
		{"sandbox", "run"},
		{"sandbox", "run", "--bogus", "--", "true"},
		{"sandbox", "rn"},
		{"sandbox", "run", "--tty", "--no-tty", "--", "true"},
		{"sandbox", "run", "--log-level", "loud", "--", "true"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			exec := func(root *cobra.Command) (string, string, int) {
				var out, errb bytes.Buffer
				root.SetArgs(args)
				root.SetIn(strings.NewReader(""))
				root.SetOut(&out)
				root.SetErr(&errb)
				err := root.Execute()
				if err != nil && !silent(err) {
					errb.WriteString(err.Error())
				}
				return out.String(), errb.String(), ExitCode(err)
			}
			home := t.TempDir()
			po, pe, pc := exec(rootFor(&App{Home: home, Out: io.Discard, Err: io.Discard}, args))
			fo, fe, fc := exec(NewRoot(&App{Home: home, Out: io.Discard, Err: io.Discard}))
			if pc != fc || po != fo || pe != fe {
				t.Errorf("pruned tree: exit %d\n%s%s\nwhole tree: exit %d\n%s%s", pc, po, pe, fc, fo, fe)
			}
			if po == "" && pe == "" {
				t.Error("no output at all: the test compares nothing")
			}
		})
	}
	if c, _, _ := rootFor(&App{Home: t.TempDir()}, []string{"sandbox", "run"}).Find([]string{"policy"}); c.Name() == "policy" {
		t.Error("the sandbox tree holds `policy`: it is not pruned")
	}
}
