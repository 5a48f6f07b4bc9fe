package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLeanDependencies keeps the registry and signing code out of the
// nemoclaw that launches sandboxes: their package initialisation (sigstore's
// protobuf registrations, go-openapi's format registry, the registry
// clients) would cost every start milliseconds. Those commands live in
// nemoclaw-dist. libseccomp is out too: the seccomp filters are generated
// ahead (runner/sandbox/seccomp.go).
//
// go-plugin and gRPC are allowed: the supervisor runs where the proxy runs,
// in this executable, and the inference router it will host talks to the
// inference plugins over them. What they cost a start is measured in
// README's "Two executables, one command".
func TestLeanDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	forbidden := []string{
		"github.com/nemoclaw/nemoclaw/runner/registry",
		"github.com/nemoclaw/nemoclaw/runner/signing",
		"github.com/nemoclaw/nemoclaw/runner/cli/distcli",
		"github.com/sigstore/", // sigstore-go, rekor, cosign's libraries
		"oras.land/",
		"github.com/google/go-containerregistry",
		"github.com/go-openapi/",
		"github.com/seccomp/libseccomp-golang",
		// `blueprint render --target kubernetes`: the Kubernetes API types
		// are hundreds of packages of init; they live in nemoclaw-dist.
		"github.com/nemoclaw/nemoclaw/runner/kubernetes",
		"k8s.io/",
		"sigs.k8s.io/",
	}
	// The table of nemoclaw-dist's commands, from which nemoclaw makes its
	// stubs, is plain data; it must stay so.
	const table = "github.com/nemoclaw/nemoclaw/runner/cli/distcli/commands"
	if out, err := exec.Command("go", "list", "-f", "{{.Imports}}", table).CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "[]" {
		t.Errorf("%s imports %s (err %v); it must import nothing", table, out, err)
	}
	pkgs := strings.Fields(string(out))
	if len(pkgs) < 50 {
		t.Fatalf("go list -deps listed only %d packages:\n%s", len(pkgs), out)
	}
	for _, p := range pkgs {
		for _, f := range forbidden {
			if leadsTo(p, f) && p != table {
				t.Errorf("nemoclaw links %s (forbidden: %s); move the code that needs it to runner/cli/distcli or generate its output ahead", p, f)
			}
		}
	}
}

// leadsTo reports whether package p is prefix f or below it (f ending in
// "/" matches anything under it).
func leadsTo(p, f string) bool {
	return p == f || strings.HasPrefix(p, f) && (strings.HasSuffix(f, "/") || strings.HasPrefix(p, f+"/"))
}
