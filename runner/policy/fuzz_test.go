package policy

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/nemoclaw/nemoclaw/runner/internal/strictyaml"
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
	// Anchors and aliases (issue 13 item 21): refused wherever they are.
	f.Add([]byte("version: 1\nnetwork_policies:\n  a: &a {endpoints: [{host: x.example.com, port: 1}]}\n  b: *a\n"))
	f.Add([]byte("version: 1\nfilesystem_policy: {read_only: &r [/usr], read_write: *r}\n"))
	f.Add([]byte("version: 1\nnetwork_middlewares: {m: {config: {a: &a [x, x], b: &b [*a, *a], c: [*b, *b]}}}\n"))
	f.Add([]byte("version: 1\nnetwork_policies:\n  a:\n    endpoints:\n      - &e {host: x.example.com, port: 443, rules: [&r {allow: {method: GET, path: /}}, *r]}\n      - *e\n"))
	f.Add([]byte("version: 1\nnetwork_policies:\n  a:\n    <<: &m {endpoints: [{host: x.example.com, port: 1}]}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, _, err := Check("fuzz.yaml", data)
		if err != nil {
			return
		}
		// One set of rules (issue 13 item 22): what Check accepts, Validate
		// (which the egress proxy runs) accepts. The converse does not hold
		// for the text alone: Check refuses "network_policies:" (null) where
		// the decoded policy is the same as one without the key.
		var decoded Policy
		if _, err := strictyaml.Decode("fuzz.yaml", data, &decoded); err != nil {
			t.Fatalf("Check accepted what does not decode: %v", err)
		}
		if err := Validate(&decoded); err != nil {
			t.Fatalf("Check accepted and Validate refused: %v\n%s", err, data)
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

// FuzzParseTiers feeds arbitrary documents to the tiers decoder: it must
// never panic, IsTiers must agree with what ParseTiers accepts, and an
// accepted document names each tier once.
func FuzzParseTiers(f *testing.F) {
	if data, err := os.ReadFile("../blueprint/testdata/nemoclaw-shaped-2026/policies/tiers.yaml"); err == nil {
		f.Add(data)
	}
	f.Add([]byte("tiers: [{name: a, presets: [{name: x, access: read}]}, {name: b, presets: []}]\n"))
	f.Add([]byte("tiers: [&t {name: a, presets: []}, *t]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		tiers, _, err := ParseTiers("fuzz.yaml", data)
		if err != nil {
			return
		}
		if !IsTiers(data) {
			t.Fatalf("ParseTiers accepted what IsTiers does not call tiers:\n%s", data)
		}
		seen := map[string]bool{}
		for _, name := range tiers.Names() {
			if seen[name] {
				t.Fatalf("tier %q accepted twice", name)
			}
			seen[name] = true
		}
	})
}
