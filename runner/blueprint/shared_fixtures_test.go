package blueprint_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nemoclaw/nemoclaw/runner/blueprint"
	"github.com/nemoclaw/nemoclaw/runner/policy"
	"github.com/nemoclaw/nemoclaw/runner/state"
)

// sharedDir is the steering repository's shared/ directory: beside this
// clone (CI keeps a read-only copy there), or where NEMOCLAW_SHARED_DIR
// says. Upstream files live there, never in this repository.
func sharedDir() string {
	if d := os.Getenv("NEMOCLAW_SHARED_DIR"); d != "" {
		return d
	}
	return filepath.Join("..", "..", "..", "shared")
}

// blueprintDirs lists every directory under root that holds a
// blueprint.yaml, in walk order.
func blueprintDirs(root string) ([]string, error) {
	var dirs []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && d.Name() == blueprint.FileName {
			dirs = append(dirs, filepath.Dir(p))
		}
		return nil
	})
	return dirs, err
}

// TestSharedNemoClawFixtures validates and plans, unchanged, every NemoClaw
// blueprint directory under shared/fixtures/nemoclaw, whatever is there
// (March 2026 today; newer upstream layouts once they are placed there), and
// the in-repo March copy, so the test runs the same with shared/ absent.
func TestSharedNemoClawFixtures(t *testing.T) {
	dirs := []string{filepath.Join("testdata", "nemoclaw-blueprint")}
	root := filepath.Join(sharedDir(), "fixtures", "nemoclaw")
	found, err := blueprintDirs(root)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		t.Logf("%s is absent: only the in-repo copy of NemoClaw's March 2026 blueprint is checked", root)
	case err != nil:
		t.Fatalf("list %s: %v", root, err)
	case len(found) == 0:
		t.Fatalf("%s holds no %s; place each upstream blueprint directory there unchanged", root, blueprint.FileName)
	default:
		dirs = append(dirs, found...)
	}
	for _, dir := range dirs {
		name := dir
		if rel, err := filepath.Rel(root, dir); err == nil && !strings.HasPrefix(rel, "..") {
			name = "shared/" + filepath.ToSlash(rel)
		}
		t.Run(name, func(t *testing.T) {
			b, err := blueprint.Load(dir)
			if err != nil {
				t.Fatalf("blueprint validate %s: %v", dir, err)
			}
			if err := policy.Validate(b.Policy); err != nil {
				t.Fatalf("the effective policy of %s fails Validate, so the proxy would not compile it: %v", dir, err)
			}
			if len(b.Profiles) == 0 {
				t.Fatalf("%s declares no inference profile", dir)
			}
			for _, profile := range b.Profiles {
				p, err := state.MakePlan(b, state.PlanOptions{Profile: profile, Home: t.TempDir(), Getenv: func(string) string { return "" }})
				if err != nil {
					t.Fatalf("blueprint plan %s --profile %s: %v", dir, profile, err)
				}
				if p.Inference == nil || p.Inference.Profile != profile || p.Policy.File != b.PolicyFile || len(p.Policy.Network) != len(b.Policy.NetworkPolicies) {
					t.Errorf("plan %s --profile %s: inference %+v, policy %s with %d groups; want profile %s, policy %s with %d groups",
						dir, profile, p.Inference, p.Policy.File, len(p.Policy.Network), profile, b.PolicyFile, len(b.Policy.NetworkPolicies))
				}
				if len(p.Refusals) > 0 {
					t.Logf("plan %s --profile %s: apply would refuse: %v", dir, profile, p.Refusals)
				}
			}
			t.Logf("%s: policy %s, %d other policies, %d presets, %d findings", dir, b.PolicyFile, len(b.OtherPolicies), len(b.Available), len(b.Findings))
		})
	}
}
