package distcli

import (
	"bytes"
	"context"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	ggcr "github.com/google/go-containerregistry/pkg/registry"
	"github.com/spf13/cobra"

	"github.com/nemoclaw/nemoclaw/runner/cli"
	"github.com/nemoclaw/nemoclaw/runner/cli/distcli/commands"
	"github.com/nemoclaw/nemoclaw/runner/registry"
)

// distRun runs nemoclaw in-process with NEMOCLAW_HOME=home and returns
// stdout, stderr and the exit code.
func distRun(t *testing.T, home string, args ...string) (string, string, int) {
	t.Helper()
	t.Setenv("NEMOCLAW_HOME", home)
	t.Setenv("NEMOCLAW_KEY_PASSWORD", "cli test pass")
	t.Setenv("DOCKER_CONFIG", filepath.Join(home, "docker"))
	var out, errb bytes.Buffer
	err := cli.Execute(context.Background(), cli.Options{Args: args, Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb})
	return out.String(), errb.String(), cli.ExitCode(err)
}

func TestDistributionExitCodes(t *testing.T) {
	srv := httptest.NewServer(ggcr.New(ggcr.WithReferrersSupport(true), ggcr.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	repo := strings.TrimPrefix(srv.URL, "http://") + "/team/bp"
	home := t.TempDir()
	bp := filepath.Join("..", "..", "registry", "testdata", "blueprint")
	key := filepath.Join(t.TempDir(), "k")
	lock := filepath.Join(t.TempDir(), "nemoclaw.lock")
	steps := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"generate key", []string{"key", "generate", key}, 0, "fingerprint: sha256:"},
		{"push", []string{"blueprint", "push", bp, repo}, 0, repo + "@sha256:"},
		{"push a digest ref", []string{"blueprint", "push", bp, repo + "@sha256:" + strings.Repeat("0", 64)}, 1, "not a digest"},
		{"pull unsigned, no trust", []string{"blueprint", "pull", repo + ":0.1.0", "--lock", lock}, 3, "no trust policy rule matches"},
		{"pull unsigned with --key", []string{"blueprint", "pull", repo + ":0.1.0", "--lock", lock, "--key", key + ".pub"}, 3, "no signature found"},
		{"apply unsigned", []string{"blueprint", "apply", repo + ":0.1.0", "--lock", lock, "--key", key + ".pub", "--dry-run"}, 3, "no signature found"},
		{"sign", []string{"blueprint", "sign", repo + ":0.1.0", "--key", key + ".key"}, 0, "signed by key sha256:"},
		{"apply by reference, dry run", []string{"blueprint", "apply", repo + ":0.1.0", "--lock", lock, "--key", key + ".pub", "--dry-run"}, 0, "sandbox "},
		{"verify", []string{"blueprint", "verify", repo + ":0.1.0", "--key", key + ".pub"}, 0, "verified"},
		{"pull with --key", []string{"blueprint", "pull", repo, "--version", "~> 0.1", "--lock", lock, "--key", key + ".pub"}, 0, "0.1.0"},
		{"list", []string{"blueprint", "list", "--lock", lock}, 0, "yes     yes"},
		{"update unchanged", []string{"blueprint", "update", "--lock", lock, "--key", key + ".pub"}, 0, "unchanged"},
		{"bad constraint", []string{"blueprint", "pull", repo, "--version", "~>> 1", "--lock", lock, "--key", key + ".pub", "--no-lock"}, 1, "version constraint"},
		{"insecure with key", []string{"blueprint", "pull", repo + ":0.1.0", "--key", key + ".pub", "--insecure-skip-verify"}, 2, "cannot be combined"},
		{"keyless half", []string{"blueprint", "verify", repo + ":0.1.0", "--certificate-identity", "a@b"}, 2, "--certificate-oidc-issuer"},
		{"sign without key", []string{"blueprint", "sign", repo + ":0.1.0"}, 2, "--key"},
		{"sign with the public key", []string{"blueprint", "sign", repo + ":0.1.0", "--key", key + ".pub"}, 2, "this is a public key; signing needs the private key"},
		{"verify a missing tag", []string{"blueprint", "verify", repo + ":9.9.9", "--key", key + ".pub"}, 1, "verify " + repo + ":9.9.9: " + repo + ":9.9.9 is not in the registry"},
		{"update a tag", []string{"blueprint", "update", repo + ":0.1.0", "--lock", lock}, 2, "not a tag or digest"},
	}
	for _, s := range steps {
		out, errs, code := distRun(t, home, s.args...)
		if code != s.code || !strings.Contains(out+errs, s.want) {
			t.Fatalf("%s: exit %d (want %d), output lacks %q\nstdout: %s\nstderr: %s", s.name, code, s.code, s.want, out, errs)
		}
	}
	if data, err := os.ReadFile(lock); err != nil || !strings.Contains(string(data), "signer: key sha256:") {
		t.Errorf("lock: %v\n%s", err, data)
	}
}

// TestHelpEverywhere runs --help on every command of the full tree (what
// nemoclaw-dist runs): each must succeed and say what it does, and none may
// be a stub that delegates.
func TestHelpEverywhere(t *testing.T) {
	root := cli.NewRoot(&cli.App{Home: t.TempDir(), Out: io.Discard, Err: io.Discard})
	var walk func(c *cobra.Command)
	var paths [][]string
	walk = func(c *cobra.Command) {
		if c.Hidden {
			return
		}
		if c.Annotations[cli.DelegatedAnnotation] != "" {
			t.Errorf("%s is a delegating stub in the full tree", c.CommandPath())
		}
		paths = append(paths, strings.Fields(c.CommandPath())[1:])
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(root)
	if len(paths) < 20 {
		t.Fatalf("only %d commands found", len(paths))
	}
	for _, p := range paths {
		out, errOut, code := distRun(t, t.TempDir(), append(p, "--help")...)
		if code != 0 {
			t.Errorf("%v --help: exit %d: %s", p, code, errOut)
		}
		if !strings.Contains(out, "Usage:\n  nemoclaw ") {
			t.Errorf("%v --help printed no usage:\n%s", p, out)
		}
	}
	// The real help of a distribution command, not a stub's.
	if out, _, _ := distRun(t, t.TempDir(), "blueprint", "pull", "--help"); !strings.Contains(out, "--certificate-identity") {
		t.Errorf("blueprint pull --help lacks its flags:\n%s", out)
	}
}

// TestDefaultLockFile: the lean tree's --lock default (apply) is the
// registry's.
func TestDefaultLockFile(t *testing.T) {
	if cli.DefaultLockFile != registry.DefaultLockFile {
		t.Errorf("cli.DefaultLockFile %q, registry.DefaultLockFile %q", cli.DefaultLockFile, registry.DefaultLockFile)
	}
}

// TestTrustCommands: trust add/list/remove manage the trust policy; a
// lock's recorded signer is reused once the rule is gone; an unsigned
// newer version blocks update (exit 3) naming it and keeping the lock.
func TestTrustCommands(t *testing.T) {
	srv := httptest.NewServer(ggcr.New(ggcr.WithReferrersSupport(true), ggcr.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	repo := host + "/team/bp"
	home := t.TempDir()
	bp := filepath.Join("..", "..", "registry", "testdata", "blueprint")
	newer := filepath.Join(t.TempDir(), "bp")
	if err := os.CopyFS(newer, os.DirFS(bp)); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(filepath.Join(newer, "blueprint.yaml"))
	if err := os.WriteFile(filepath.Join(newer, "blueprint.yaml"), bytes.Replace(data, []byte(`version: "0.1.0"`), []byte(`version: "0.2.0"`), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(t.TempDir(), "k")
	lock := filepath.Join(t.TempDir(), "nemoclaw.lock")
	steps := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"generate key", []string{"key", "generate", key}, 0, "fingerprint"},
		{"push", []string{"blueprint", "push", bp, repo}, 0, repo},
		{"sign", []string{"blueprint", "sign", repo + ":0.1.0", "--key", key + ".key"}, 0, "signed by"},
		{"trust a private key", []string{"trust", "add", host + "/team/*", "--key", key + ".key"}, 2, "give PREFIX.pub"},
		{"trust add", []string{"trust", "add", host + "/team/*", "--key", key + ".pub"}, 0, "trusted for " + host + "/team/*"},
		{"trust list", []string{"trust", "list"}, 0, host + "/team/*"},
		{"pull by the policy", []string{"blueprint", "pull", repo, "--version", "~> 0.1", "--lock", lock}, 0, "0.1.0"},
		{"trust remove", []string{"trust", "remove", host + "/team/*"}, 0, "removed"},
		{"trust remove again", []string{"trust", "remove", host + "/team/*"}, 1, "no rule of that name"},
		{"pull by the lock's signer", []string{"blueprint", "pull", repo, "--version", "~> 0.1", "--lock", lock}, 0, "0.1.0"},
		{"push an unsigned newer version", []string{"blueprint", "push", newer, repo}, 0, repo},
		{"update to an unsigned version", []string{"blueprint", "update", repo, "--lock", lock, "--key", key + ".pub"}, 3, "still pins version 0.1.0"},
	}
	for _, s := range steps {
		before, _ := os.ReadFile(lock)
		out, errs, code := distRun(t, home, s.args...)
		if code != s.code || !strings.Contains(out+errs, s.want) {
			t.Fatalf("%s: exit %d (want %d), output lacks %q\nstdout: %s\nstderr: %s", s.name, code, s.code, s.want, out, errs)
		}
		if s.code == 3 {
			if !strings.Contains(errs, "(version 0.2.0)") {
				t.Errorf("%s: the refusal does not name the unsigned version: %s", s.name, errs)
			}
			if after, _ := os.ReadFile(lock); !bytes.Equal(before, after) {
				t.Errorf("%s: a refused update changed the lock", s.name)
			}
		}
	}
}

// TestCommandTable: the commands this package registers are exactly the
// table the lean nemoclaw builds its stubs from, each where the table puts
// it and with the table's usage and description.
func TestCommandTable(t *testing.T) {
	if len(constructors) != len(commands.All) {
		t.Errorf("%d constructors, %d commands in the table", len(constructors), len(commands.All))
	}
	app := &cli.App{Home: t.TempDir(), Out: io.Discard, Err: io.Discard}
	root := cli.NewRoot(app)
	for _, c := range commands.All {
		ctor := constructors[c]
		if ctor == nil {
			t.Errorf("%s %s: in the table, but no constructor builds it", c.Parent, c.Use)
			continue
		}
		if got := ctor(app); got.Use != c.Use || got.Short != c.Short {
			t.Errorf("%s: built with Use %q Short %q, the table says %q %q", c.Use, got.Use, got.Short, c.Use, c.Short)
		}
		path := strings.Fields(strings.TrimSpace(c.Parent + " " + strings.Fields(c.Use)[0]))
		found, _, err := root.Find(path)
		if err != nil || found.Use != c.Use || found.Annotations[cli.DelegatedAnnotation] != "" {
			t.Errorf("%v: not in the full tree as the table's real command (found %v, %v)", path, found.CommandPath(), err)
		}
	}
}
