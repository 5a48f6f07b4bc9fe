package sandbox

import (
	"fmt"
	"os"
	"testing"
)

// TestMain lets the test binary serve as the sandbox init: Start re-executes
// /proc/self/exe, which is this binary.
func TestMain(m *testing.M) {
	MaybeInit()
	if s := os.Getenv(earlyHelperEnv); s != "" {
		if err := earlyScenario(s); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if s := os.Getenv(memHelperEnv); s != "" {
		os.Exit(memHog(s))
	}
	if s := os.Getenv(hangupHelperEnv); s != "" {
		os.Exit(hangupScenario(s))
	}
	os.Exit(m.Run())
}
