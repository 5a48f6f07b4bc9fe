package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSuperviseArgs: --detach re-executes the same words with the hidden
// flag right after the subcommand, never inside the agent's command.
func TestSuperviseArgs(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // "" for an error
	}{
		{[]string{"sandbox", "run", "-d", "--", "sh"}, "sandbox run --supervise-fd=3 -d -- sh"},
		{[]string{"--log-level", "debug", "sandbox", "run", "--detach", "--", "x"}, "--log-level debug sandbox run --supervise-fd=3 --detach -- x"},
		{[]string{"blueprint", "apply", "./bp", "--detach", "--", "sandbox", "run"}, "blueprint apply --supervise-fd=3 ./bp --detach -- sandbox run"},
		{[]string{"policy", "show", "--", "sandbox", "run"}, ""},
	} {
		got, err := superviseArgs(tc.args)
		if tc.want == "" {
			if err == nil {
				t.Errorf("superviseArgs(%q) = %q, want an error", tc.args, got)
			}
			continue
		}
		if err != nil || strings.Join(got, " ") != tc.want {
			t.Errorf("superviseArgs(%q) = %q, %v; want %q", tc.args, got, err, tc.want)
		}
	}
}

// runHome is run under a given $NEMOCLAW_HOME.
func runHome(t *testing.T, home string, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	t.Setenv("NEMOCLAW_HOME", home)
	err := Execute(context.Background(), Options{Args: args, Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb})
	return out.String(), errb.String(), ExitCode(err)
}

// TestSandboxManageOnRecords drives list, status, logs, completion and
// destroy over records on disk (the running path is in e2e).
func TestSandboxManageOnRecords(t *testing.T) {
	home := t.TempDir()
	dead := filepath.Join(home, "sandboxes", "dead")
	stopped := filepath.Join(home, "sandboxes", "stopped")
	writeFile(t, filepath.Join(dead, "supervisor.json"), `{"v":1,"name":"dead","state":"running","supervisor_pid":2147483000,"supervisor_start":1,"started":"2026-01-01T00:00:00Z","blueprint":"embedded:default","version":"0.1.0"}`)
	writeFile(t, filepath.Join(stopped, "supervisor.json"), `{"v":1,"name":"stopped","state":"stopped","exit_code":0}`)
	writeFile(t, filepath.Join(stopped, "agent.log"), "line one\nbell \x1b[2J\n")
	writeFile(t, filepath.Join(stopped, "audit.jsonl"), `{"time":"2026-01-01T00:00:00Z","class":"Network Activity","activity":"connect","decision":"deny","host":"evil.test","port":443,"binary":"/usr/bin/cu\u001brl","reason":"no rule"}`+"\n")
	for _, tc := range []struct {
		name string
		args []string
		code int
		want []string
		not  []string
	}{
		{"list", []string{"sandbox", "list"}, 0, []string{"dead", "supervisor died after", "embedded:default@0.1.0", "stopped (exit 0)"}, nil},
		{"status dead", []string{"sandbox", "status", "dead"}, 0, []string{"supervisor died after", "embedded:default@0.1.0"}, nil},
		{"status missing", []string{"sandbox", "status", "nope"}, 1, nil, nil},
		{"status bad name", []string{"sandbox", "status", "../x"}, ExitUsage, nil, nil},
		{"logs", []string{"sandbox", "logs", "stopped"}, 0, []string{"line one", "bell \x1b[2J"}, nil},
		{"logs json", []string{"sandbox", "logs", "stopped", "-o", "json"}, 0, []string{`{"line":"line one"}`}, nil},
		{"logs audit", []string{"sandbox", "logs", "--audit", "stopped"}, 0, []string{"deny", "evil.test:443", `/usr/bin/cu\x1brl`, "(no rule)"}, []string{"\x1b"}},
		{"logs audit json", []string{"sandbox", "logs", "--audit", "-o", "json", "stopped"}, 0, []string{`"host":"evil.test"`}, nil},
		{"logs no agent log", []string{"sandbox", "logs", "dead"}, 0, nil, nil},
		{"complete", []string{"__complete", "sandbox", "status", "d"}, 0, []string{"dead"}, []string{"stopped"}},
		{"complete preset", []string{"__complete", "policy", "add", "dead", "py"}, 0, []string{"pypi"}, []string{"dead"}},
		{"complete profile", []string{"__complete", "blueprint", "apply", "--profile", "ol"}, 0, []string{"ollama"}, []string{"nvidia"}},
		{"stop not running", []string{"sandbox", "stop", "stopped"}, 0, []string{"stopped: stopped (exit 0)"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, stderr, code := runHome(t, home, tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\n%s%s", code, tc.code, out, stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tc.not {
				if strings.Contains(out, w) {
					t.Errorf("output has %q:\n%s", w, out)
				}
			}
		})
	}
	out, _, _ := runHome(t, home, "sandbox", "list", "-o", "json")
	var all []struct{ Name, State string }
	if err := json.Unmarshal([]byte(out), &all); err != nil || len(all) != 2 || all[0].State != "dead" || all[1].State != "stopped" {
		t.Fatalf("list -o json: %v %+v", err, all)
	}
	for _, n := range []string{"dead", "stopped"} {
		if out, stderr, code := runHome(t, home, "sandbox", "destroy", n); code != 0 || out != "destroyed "+n+"\n" {
			t.Fatalf("destroy %s: exit %d %q %s", n, code, out, stderr)
		}
	}
	if ents, err := os.ReadDir(filepath.Join(home, "sandboxes")); err != nil || len(ents) != 0 {
		t.Fatalf("left after destroy: %v %v", ents, err)
	}
}
