package cli

import (
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/nemoclaw/nemoclaw/runner/version"
)

func TestSourceFlagsLocalDirectory(t *testing.T) {
	app := &App{Home: t.TempDir(), Out: io.Discard, Err: io.Discard}
	cmd := &cobra.Command{}
	s := addSourceFlags(cmd)
	dir := t.TempDir()
	got, err := s.resolve(cmd, app, dir)
	if err != nil || got != dir {
		t.Fatalf("local dir: %q %v", got, err)
	}
	for arg, want := range map[string]bool{"./bp": true, "/abs": true, "127.0.0.1:5000/team/bp": false, dir: true} {
		if isLocalSource(arg) != want {
			t.Errorf("isLocalSource(%q) = %v", arg, !want)
		}
	}
}

// TestDelegation checks that every command needing the registry or signing
// code re-runs the whole command line, unchanged, in nemoclaw-dist.
func TestDelegation(t *testing.T) {
	for _, args := range [][]string{
		{"blueprint", "pull", "--help"},
		{"blueprint", "pull", "127.0.0.1:5000/team/bp", "--version", "~> 1.2", "-o", "json"},
		{"blueprint", "push", "./bp", "127.0.0.1:5000/team/bp", "--plain-http"},
		{"blueprint", "update"},
		{"blueprint", "list", "--lock", "x.lock"},
		{"blueprint", "sign", "r/x:1", "--key", "k.key"},
		{"blueprint", "verify", "r/x:1", "--key", "k.pub"},
		{"--log-level", "debug", "blueprint", "list"},
		{"key"},
		{"key", "generate", "--help"},
		{"key", "generate", "/tmp/k"},
		{"registry", "login", "h:5000", "-u", "alice", "--password-stdin"},
		{"registry", "logout", "h:5000"},
		{"help", "blueprint", "sign"},
		{"help", "key", "generate"},
		{"__complete", "key", ""},
		{"blueprint", "apply", "127.0.0.1:5000/team/bp", "--version", "~> 0.1", "--key", "k.pub", "--", "/bin/sh", "-c", "exit 5"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			helper, calls := fakeDist(t)
			_, errOut, code := run(t, args...)
			if len(*calls) != 1 {
				t.Fatalf("%d execs, want 1 (exit %d: %s)", len(*calls), code, errOut)
			}
			c := (*calls)[0]
			if c.path != helper || !slices.Equal(c.argv, append([]string{helper}, args...)) {
				t.Errorf("exec %s %q, want %s with the same words", c.path, c.argv, helper)
			}
			if !slices.Contains(c.envv, delegatedEnv+"="+version.Identity()) || !slices.Contains(c.envv, "NEMOCLAW_HOME="+os.Getenv("NEMOCLAW_HOME")) {
				t.Errorf("the helper's environment lacks %s or the caller's environment", delegatedEnv)
			}
			if args[0] == "__complete" {
				return // completion fails quietly
			}
			if code != ExitError || !strings.Contains(errOut, errFakeExec.Error()) {
				t.Errorf("a failed exec: exit %d, stderr %q", code, errOut)
			}
		})
	}
}

// TestNoDelegation checks that what the lean nemoclaw can do itself never
// execs: local and embedded blueprints, group help, the other commands.
func TestNoDelegation(t *testing.T) {
	bp := filepath.Join("..", "..", "blueprints", "default")
	for _, args := range [][]string{
		{"blueprint", "apply", "--dry-run"},
		{"blueprint", "apply", bp, "--dry-run"},
		{"blueprint", "apply", "./no-such-dir", "--dry-run"},
		{"blueprint", "apply", "plain-word"},
		{"blueprint", "plan"},
		{"blueprint", "--help"},
		{"--help"},
		{"help", "blueprint"},
		{"version"},
		{"__complete", "blueprint", "p"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			_, calls := fakeDist(t)
			_, errOut, code := run(t, args...)
			if len(*calls) != 0 {
				t.Errorf("exec %q (exit %d: %s)", (*calls)[0].argv, code, errOut)
			}
		})
	}
}

// TestDelegationWithoutHelper: no nemoclaw-dist next to nemoclaw nor on
// $PATH is an error (exit 1) that names the command, where nemoclaw looked
// and how to get the helper.
func TestDelegationWithoutHelper(t *testing.T) {
	for name, args := range map[string][]string{
		"blueprint pull":                         {"blueprint", "pull", "--help"},
		"key":                                    {"key", "generate", "k"},
		"registry":                               {"help", "registry"},
		"blueprint apply 127.0.0.1:5000/team/bp": {"blueprint", "apply", "127.0.0.1:5000/team/bp"},
	} {
		out, errOut, code := run(t, args...)
		for _, want := range []string{"nemoclaw: " + name + " needs nemoclaw-dist", "/nonexistent (next to nemoclaw)", "$PATH", "make build", "go install github.com/nemoclaw/nemoclaw/cmd/...@latest"} {
			if !strings.Contains(errOut, want) {
				t.Errorf("%v: stderr lacks %q:\n%s", args, want, errOut)
			}
		}
		if code != ExitError || out != "" {
			t.Errorf("%v: exit %d, stdout %q; want 1 and nothing", args, code, out)
		}
	}
}

// TestFindHelper: next to the executable (through symlinks), else $PATH.
func TestFindHelper(t *testing.T) {
	real := t.TempDir()
	helper := filepath.Join(real, HelperName)
	writeFile(t, helper, "#!/bin/sh\n")
	if err := os.Chmod(helper, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(real, "nemoclaw"), "")
	link := filepath.Join(t.TempDir(), "nemoclaw")
	if err := os.Symlink(filepath.Join(real, "nemoclaw"), link); err != nil {
		t.Fatal(err)
	}
	oldExe := executable
	t.Cleanup(func() { executable = oldExe })
	executable = func() (string, error) { return link, nil }
	if p, err := findHelper("key"); err != nil || p != helper {
		t.Errorf("through a symlink: %q, %v; want %s", p, err, helper)
	}
	// Not executable: not the helper, and $PATH is never searched (a
	// nemoclaw-dist there is an exec hijack for a nemoclaw run as root).
	if err := os.Chmod(helper, 0o644); err != nil {
		t.Fatal(err)
	}
	onPath := t.TempDir()
	writeFile(t, filepath.Join(onPath, HelperName), "#!/bin/sh\n")
	if err := os.Chmod(filepath.Join(onPath, HelperName), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", onPath)
	if p, err := findHelper("key"); err == nil || !strings.Contains(err.Error(), "never looked for on $PATH") {
		t.Errorf("with nemoclaw-dist only on $PATH: %q, %v; want a refusal", p, err)
	}
}

// TestDelegationLoop: a nemoclaw-dist that is really a lean nemoclaw must
// not exec itself forever.
func TestDelegationLoop(t *testing.T) {
	_, calls := fakeDist(t)
	t.Setenv(delegatedEnv, version.Identity())
	_, errOut, code := run(t, "blueprint", "list")
	if len(*calls) != 0 || code != ExitError || !strings.Contains(errOut, "lacks this command") {
		t.Errorf("exit %d, %d execs: %s", code, len(*calls), errOut)
	}
}

// TestHandshake: a command line handed over by a nemoclaw of another build
// is refused before anything runs, naming both builds and the fix; the
// same build, or no hand-over, runs.
func TestHandshake(t *testing.T) {
	own := version.Identity()
	tests := []struct {
		from    string
		refused bool
	}{
		{"", false},
		{own, false},
		{"0.0.9+0123abc go1.22.0", true},
		{"1", true}, // a nemoclaw from before the handshake
	}
	for _, tt := range tests {
		t.Run(tt.from, func(t *testing.T) {
			_, calls := fakeDist(t)
			if tt.from != "" {
				t.Setenv(delegatedEnv, tt.from)
			}
			out, errOut, code := run(t, "version")
			if !tt.refused {
				if code != ExitOK || !strings.Contains(out, "nemoclaw "+version.Version) {
					t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
				}
				return
			}
			for _, want := range []string{"another build", "is " + strconv.Quote(own), "started it is " + strconv.Quote(tt.from), "reinstall both together", "make build"} {
				if !strings.Contains(errOut, want) {
					t.Errorf("stderr lacks %q:\n%s", want, errOut)
				}
			}
			if code != ExitError || out != "" || len(*calls) != 0 {
				t.Errorf("exit %d, stdout %q, %d execs; want 1, nothing, none", code, out, len(*calls))
			}
		})
	}
}
