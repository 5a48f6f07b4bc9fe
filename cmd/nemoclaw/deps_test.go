package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLeanDependencies keeps the registry and signing code out of the
// nemoclaw that launches sandboxes: their package initialisation (sigstore,
// protobuf registrations, grpc, go-openapi) would cost every start
// milliseconds. Those commands live in nemoclaw-dist. libseccomp is out
// too: the seccomp filters are generated ahead (runner/sandbox/seccomp.go).
func TestLeanDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	forbidden := []string{
		"github.com/nemoclaw/nemoclaw/runner/registry",
		"github.com/nemoclaw/nemoclaw/runner/signing",
		"github.com/nemoclaw/nemoclaw/runner/cli/distcli",
		"github.com/sigstore/",
		"oras.land/",
		"google.golang.org/grpc",
		"github.com/seccomp/libseccomp-golang",
	}
	pkgs := strings.Fields(string(out))
	if len(pkgs) < 50 {
		t.Fatalf("go list -deps listed only %d packages:\n%s", len(pkgs), out)
	}
	for _, p := range pkgs {
		for _, f := range forbidden {
			if p == f || strings.HasPrefix(p, f) && (strings.HasSuffix(f, "/") || strings.HasPrefix(p, f+"/")) {
				t.Errorf("nemoclaw links %s (forbidden: %s); move the code that needs it to runner/cli/distcli or generate its output ahead", p, f)
			}
		}
	}
}
