package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The lean nemoclaw hands the registry and signing commands to nemoclaw-dist
// by exec; the registry e2e tests already run every such operation through
// it. These tests cover what the user sees of the split itself.

// bareEnv is an environment whose $PATH lacks the built binaries.
func bareEnv(home string, extra ...string) []string {
	return append([]string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "NEMOCLAW_HOME=" + home, "NEMOCLAW_KEY_PASSWORD=e2e key pass"}, extra...)
}

// TestDelegatedHelp: the lean nemoclaw's help is nemoclaw-dist's, word for
// word, for the groups it shows itself and the commands it delegates.
func TestDelegatedHelp(t *testing.T) {
	home := t.TempDir()
	for _, args := range [][]string{
		{"--help"},
		{"blueprint", "--help"},
		{"blueprint", "pull", "--help"},
		{"blueprint", "apply", "--help"},
		{"key", "--help"},
		{"key", "generate", "--help"},
		{"registry", "login", "--help"},
		{"help", "blueprint", "sign"},
	} {
		lean := exec.Command(Bin("nemoclaw"), args...)
		lean.Env = bareEnv(home)
		out, errs, code := runCmd(t, lean)
		full := exec.Command(Bin("nemoclaw-dist"), args...)
		full.Env = bareEnv(home)
		want, _, _ := runCmd(t, full)
		if code != 0 || out != want {
			t.Errorf("nemoclaw %s: exit %d, stderr %q\nstdout:\n%s\nnemoclaw-dist's:\n%s", strings.Join(args, " "), code, errs, out, want)
		}
	}
	lean := exec.Command(Bin("nemoclaw"), "blueprint", "pull", "--help")
	lean.Env = bareEnv(home)
	out, _, _ := runCmd(t, lean)
	for _, want := range []string{"Usage:\n  nemoclaw blueprint pull REF [flags]", "--certificate-identity", "--no-lock"} {
		if !strings.Contains(out, want) {
			t.Errorf("nemoclaw blueprint pull --help lacks %q:\n%s", want, out)
		}
	}
}

// TestDelegatedOperation runs a real delegated command through the lean
// nemoclaw, also by a symlink from elsewhere (the helper is found next to
// the symlink's target); flags, exit codes and stdin pass through. A
// helper only on $PATH is never used (TestHelperMissing).
func TestDelegatedOperation(t *testing.T) {
	home := t.TempDir()
	link := filepath.Join(t.TempDir(), "nemoclaw")
	if err := os.Symlink(Bin("nemoclaw"), link); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, bin string
		env       []string
	}{
		{"next to nemoclaw", Bin("nemoclaw"), bareEnv(home)},
		{"through a symlink", link, bareEnv(home)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prefix := filepath.Join(t.TempDir(), "team")
			cmd := exec.Command(tc.bin, "key", "generate", prefix)
			cmd.Env = tc.env
			out, errs, code := runCmd(t, cmd)
			if code != 0 || !strings.Contains(out, "fingerprint: sha256:") {
				t.Fatalf("key generate: exit %d\nstdout: %s\nstderr: %s", code, out, errs)
			}
			for _, f := range []string{prefix + ".key", prefix + ".pub"} {
				if _, err := os.Stat(f); err != nil {
					t.Errorf("key generate wrote no %s: %v", f, err)
				}
			}
			// A usage error keeps its exit code (2) and message.
			cmd = exec.Command(tc.bin, "blueprint", "sign", "127.0.0.1:1/team/bp:1")
			cmd.Env = tc.env
			if _, errs, code := runCmd(t, cmd); code != 2 || !strings.Contains(errs, "--key PREFIX.key is required") {
				t.Errorf("sign without --key: exit %d, want 2: %s", code, errs)
			}
			// stdin reaches the helper: an empty piped password is refused.
			cmd = exec.Command(tc.bin, "registry", "login", "127.0.0.1:1", "-u", "alice", "--password-stdin")
			cmd.Env, cmd.Stdin = tc.env, strings.NewReader("\n")
			if _, errs, code := runCmd(t, cmd); code != 2 || !strings.Contains(errs, "empty password") {
				t.Errorf("login with an empty piped password: exit %d, want 2: %s", code, errs)
			}
		})
	}
}

// TestHelperMissing: a nemoclaw without nemoclaw-dist next to it says so,
// where it looked and how to get it, and exits 1 — also when a
// nemoclaw-dist is on $PATH, which is never searched (for a nemoclaw run
// as root, an exec hijack); what it does itself still works.
func TestHelperMissing(t *testing.T) {
	dir := t.TempDir()
	lean := filepath.Join(dir, "nemoclaw")
	copyFile(t, Bin("nemoclaw"), lean)
	home := t.TempDir()
	for name, args := range map[string][]string{
		"blueprint pull":                         {"blueprint", "pull", "--help"},
		"key":                                    {"key", "generate", filepath.Join(home, "k")},
		"blueprint apply 127.0.0.1:1/team/agent": {"blueprint", "apply", "127.0.0.1:1/team/agent", "--", "/bin/true"},
	} {
		cmd := exec.Command(lean, args...)
		cmd.Env = bareEnv(home, "PATH="+binDir+":/usr/bin:/bin")
		out, errs, code := runCmd(t, cmd)
		if code != 1 || out != "" {
			t.Errorf("nemoclaw %s: exit %d, stdout %q; want 1 and nothing", strings.Join(args, " "), code, out)
		}
		for _, want := range []string{"nemoclaw: " + name + " needs nemoclaw-dist", dir + " (next to nemoclaw)", "$PATH", "make build", "go install github.com/nemoclaw/nemoclaw/cmd/...@latest"} {
			if !strings.Contains(errs, want) {
				t.Errorf("nemoclaw %s: stderr lacks %q:\n%s", strings.Join(args, " "), want, errs)
			}
		}
	}
	cmd := exec.Command(lean, "blueprint", "validate")
	cmd.Env = bareEnv(home)
	if out, errs, code := runCmd(t, cmd); code != 0 || !strings.Contains(out, "is valid") {
		t.Errorf("validate without nemoclaw-dist: exit %d: %s", code, errs)
	}
}

// TestLeanStartHasNoDistInit: starting the lean nemoclaw initialises none
// of the registry, signing and Kubernetes dependencies (the reason for the
// split). gRPC is allowed: the inference plugin host, which the supervisor
// runs, speaks go-plugin's gRPC (its start cost is in docs/performance.md).
func TestLeanStartHasNoDistInit(t *testing.T) {
	cmd := exec.Command(Bin("nemoclaw"), "version")
	cmd.Env = append(bareEnv(t.TempDir()), "GODEBUG=inittrace=1")
	_, errs, code := runCmd(t, cmd)
	if code != 0 || !strings.Contains(errs, "init ") {
		t.Fatalf("nemoclaw version: exit %d, no init trace: %s", code, errs)
	}
	for _, line := range strings.Split(errs, "\n") {
		for _, bad := range []string{"sigstore", "oras.land", "k8s.io", "runner/registry", "runner/signing", "runner/kubernetes"} {
			if strings.Contains(line, bad) {
				t.Errorf("nemoclaw initialises %s: %s", bad, line)
			}
		}
	}
}

// copyFile copies an executable.
func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o755); err != nil {
		t.Fatal(err)
	}
}

// TestHelperOfAnotherBuild: a nemoclaw-dist of another build next to
// nemoclaw refuses the command line it is handed, naming both builds and
// how to fix it, before doing anything; the pair of one build works.
func TestHelperOfAnotherBuild(t *testing.T) {
	dir := t.TempDir()
	lean := filepath.Join(dir, "nemoclaw")
	copyFile(t, Bin("nemoclaw"), lean)
	build := exec.Command("go", "build", "-ldflags", "-X github.com/nemoclaw/nemoclaw/runner/version.Build=e2e-other-build", "-o", filepath.Join(dir, "nemoclaw-dist"), "../cmd/nemoclaw-dist")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build a nemoclaw-dist of another build: %v\n%s", err, out)
	}
	home := t.TempDir()
	key := filepath.Join(home, "k")
	cmd := exec.Command(lean, "key", "generate", key)
	cmd.Env = bareEnv(home)
	out, errs, code := runCmd(t, cmd)
	if code != 1 || out != "" {
		t.Errorf("exit %d, stdout %q; want 1 and nothing", code, out)
	}
	for _, want := range []string{"another build", "+e2e-other-build", "reinstall both together", "make build"} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
	if _, err := os.Stat(key + ".key"); !os.IsNotExist(err) {
		t.Errorf("the refused helper generated a key anyway (stat: %v)", err)
	}
	copyFile(t, Bin("nemoclaw-dist"), filepath.Join(dir, "nemoclaw-dist"))
	cmd = exec.Command(lean, "key", "generate", key)
	cmd.Env = bareEnv(home)
	if _, errs, code := runCmd(t, cmd); code != 0 {
		t.Errorf("the pair of one build: exit %d: %s", code, errs)
	}
}
