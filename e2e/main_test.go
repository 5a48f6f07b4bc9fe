// Package e2e drives the built nemoclaw binaries end to end: sandbox escape
// attempts, egress through the proxy, registry push/pull/verify.
package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// binDir holds the binaries built once for the whole e2e run.
var binDir string

// TestMain builds ./cmd/... into a temporary directory before the tests run,
// or uses NEMOCLAW_BIN_DIR when it is set (make test builds into bin/ first;
// a relative path is relative to the repository root). Either way nemoclaw
// and nemoclaw-dist lie side by side, as users install them: the registry
// tests run Bin("nemoclaw"), which hands those commands to nemoclaw-dist.
func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if d := os.Getenv("NEMOCLAW_BIN_DIR"); d != "" {
		// A relative directory is taken from the repository root, where
		// `make` and users run from, not from this package's directory.
		if !filepath.IsAbs(d) {
			d = filepath.Join("..", d)
		}
		abs, err := filepath.Abs(d)
		if err != nil {
			fmt.Fprintln(os.Stderr, "e2e:", err)
			return 1
		}
		binDir = abs
		return checkAndRun(m)
	}
	dir, err := os.MkdirTemp("", "nemoclaw-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	// The temp dir must be traversable by the unprivileged users some tests drop to.
	if err := os.Chmod(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	cmd := exec.Command("go", "build", "-o", dir+string(os.PathSeparator), "../cmd/...")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: build binaries:", err)
		return 1
	}
	binDir = dir
	return checkAndRun(m)
}

// checkAndRun runs the tests once binDir holds both CLI executables.
func checkAndRun(m *testing.M) int {
	for _, name := range []string{"nemoclaw", "nemoclaw-dist"} {
		if _, err := os.Stat(Bin(name)); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: %v (make build builds both into bin/)\n", err)
			return 1
		}
	}
	return m.Run()
}

// Bin returns the path of the built binary name (e.g. "nemoclaw").
func Bin(name string) string { return filepath.Join(binDir, name) }

// runCmd runs cmd and returns its stdout, stderr and exit code; a command
// that cannot start fails the test.
func runCmd(t *testing.T, cmd *exec.Cmd) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %v: %v", cmd.Args, err)
	}
	return out.String(), errb.String(), code
}
