package sdk_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestSDKImportsNoRunner: a plugin built against the SDK (and its
// openaicompat and sdktest packages) links none of nemoclaw's runner
// packages — the SDK is public and must not drag the host in.
func TestSDKImportsNoRunner(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "../...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	pkgs := strings.Fields(string(out))
	if len(pkgs) < 20 {
		t.Fatalf("go list -deps listed only %d packages", len(pkgs))
	}
	for _, p := range pkgs {
		if strings.HasPrefix(p, "github.com/nemoclaw/nemoclaw/runner/") || strings.HasPrefix(p, "github.com/nemoclaw/nemoclaw/internal/") {
			t.Errorf("the plugin SDK or a plugin links %s", p)
		}
	}
}
