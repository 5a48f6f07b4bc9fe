package policy

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse feeds arbitrary documents to the policy decoder: it must never
// panic, and whatever it accepts must survive a canonical round trip.
func FuzzParse(f *testing.F) {
	for _, dir := range []string{"testdata/invalid", "testdata/valid", "../../blueprints/default/policies"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
		for _, file := range files {
			if data, err := os.ReadFile(file); err == nil {
				f.Add(data)
			}
		}
	}
	f.Add([]byte("version: 1\nnetwork_policies: {a: {endpoints: [{host: x.example.com, port: 1}]}}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, _, err := Check("fuzz.yaml", data)
		if err != nil {
			return
		}
		c, err := Canonical(p)
		if err != nil {
			t.Fatalf("canonical of an accepted policy: %v", err)
		}
		if _, _, err := Check("canonical.yaml", c); err != nil {
			t.Fatalf("canonical form of an accepted policy is rejected: %v\n%s", err, c)
		}
	})
}

// FuzzParsePreset does the same for presets.
func FuzzParsePreset(f *testing.F) {
	files, _ := filepath.Glob("../../blueprints/default/policies/presets/*.yaml")
	for _, file := range files {
		if data, err := os.ReadFile(file); err == nil {
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _, _ = ParsePreset("fuzz.yaml", data)
	})
}
