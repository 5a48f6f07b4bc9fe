// Package testutil holds helpers shared by nemoclaw's tests.
package testutil

import (
	"os"
	"testing"
)

// Strict reports whether skips must fail (NEMOCLAW_STRICT_TESTS=1, set in CI).
func Strict() bool { return os.Getenv("NEMOCLAW_STRICT_TESTS") == "1" }

// SkipOrFail skips t with reason, one precise sentence naming the missing
// kernel feature or tool; under NEMOCLAW_STRICT_TESTS=1 it fails instead so
// that CI cannot go green on a machine that silently lacks a feature.
func SkipOrFail(t testing.TB, reason string) {
	t.Helper()
	if Strict() {
		t.Fatalf("required by NEMOCLAW_STRICT_TESTS=1: %s", reason)
	}
	t.Skip(reason)
}
