package sandbox

import (
	"os"
	"testing"
)

// TestMain lets the test binary serve as the sandbox init: Start re-executes
// /proc/self/exe, which is this binary.
func TestMain(m *testing.M) {
	MaybeInit()
	os.Exit(m.Run())
}
