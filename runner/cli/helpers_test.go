package cli

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// No test of this package execs: without fakeDist, nemoclaw-dist is
// nowhere to be found.
func init() {
	executable = func() (string, error) { return "/nonexistent/nemoclaw", nil }
	execve = func(string, []string, []string) error { return errors.New("tests never exec") }
}

// writeFile writes content to path, creating parent directories.
func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// execCall is one call of the fake execve.
type execCall struct {
	path       string
	argv, envv []string
}

// errFakeExec is what the fake execve returns after recording the call.
var errFakeExec = errors.New("fake exec")

// fakeDist makes nemoclaw run from a directory that holds an executable
// nemoclaw-dist, and records execve calls instead of making them. It
// returns the helper's path and the calls.
func fakeDist(t *testing.T) (string, *[]execCall) {
	t.Helper()
	dir := t.TempDir()
	helper := filepath.Join(dir, HelperName)
	if err := os.WriteFile(helper, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	calls := &[]execCall{}
	oldExe, oldExec := executable, execve
	executable = func() (string, error) { return filepath.Join(dir, "nemoclaw"), nil }
	execve = func(path string, argv, envv []string) error {
		*calls = append(*calls, execCall{path, argv, envv})
		return errFakeExec
	}
	t.Cleanup(func() { executable, execve = oldExe, oldExec })
	return helper, calls
}
