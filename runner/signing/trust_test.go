package signing

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseTrustPolicy(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, file, wantErr string
	}{
		{"valid", "valid.yaml", ""},
		{"unknown key", "unknown-key.yaml", `unknown-key.yaml:5:5: rules[0].trusted_keys: unknown field "trusted_keys"`},
		{"anchor", "anchor.yaml", "anchor.yaml:4:12: YAML anchors and aliases are not supported (anchor &m)"},
		{"bad version", "bad-version.yaml", "want version: 1"},
		{"rule trusts nobody", "no-signers.yaml", "needs keys or identities"},
		{"identity half set", "identity-half.yaml", "exactly one of issuer"},
		{"no match", "no-match.yaml", "needs at least one"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join("testdata", "trust", tc.file)
			p, err := LoadTrustPolicy(path)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if len(p.Rules) != 2 {
					t.Errorf("rules %d, want 2", len(p.Rules))
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), path) {
				t.Errorf("got %v, want error naming %s and containing %q", err, path, tc.wantErr)
			}
		})
	}
}

func TestTrustPolicyMatch(t *testing.T) {
	t.Parallel()
	p, err := LoadTrustPolicy(filepath.Join("testdata", "trust", "valid.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ repo, want string }{
		{"127.0.0.1:5000/team/bp", "loopback team"},
		{"127.0.0.1:40123/team/bp", "loopback team"},
		{"127.0.0.1:5000/team/sub/bp", ""},
		{"registry.example.com/acme/a/b/c", "acme"},
		{"registry.example.com/other/bp", ""},
		{"127.0.0.1:5000/teams/bp", ""},
	}
	for _, tc := range tests {
		r := p.Match(tc.repo)
		got := ""
		if r != nil {
			got = r.Name
		}
		if got != tc.want {
			t.Errorf("Match(%q) = %q, want %q", tc.repo, got, tc.want)
		}
	}
}

func TestRequirementFor(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if _, _, err := GenerateKey(filepath.Join(dir, "team"), pass); err != nil {
		t.Fatal(err)
	}
	policy := "version: 1\nrules:\n  - name: team\n    match: [\"127.0.0.1:*/team/*\"]\n    keys: [team.pub]\n"
	path := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(path, []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := LoadTrustPolicy(path)
	if err != nil {
		t.Fatal(err)
	}
	req, err := p.RequirementFor("127.0.0.1:5000/team/bp")
	if err != nil {
		t.Fatal(err)
	}
	if len(req.Keys) != 1 || !strings.Contains(req.DecidedBy, `rule "team"`) {
		t.Errorf("requirement %+v", req)
	}
	_, err = p.RequirementFor("127.0.0.1:5000/other/bp")
	var ve *VerificationError
	if !errors.As(err, &ve) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "--insecure-skip-verify") {
		t.Errorf("unmatched repository: got %v", err)
	}
	missing, err := LoadTrustPolicy(filepath.Join(dir, "absent.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := missing.RequirementFor("x/y"); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing policy file: got %v", err)
	}
}

func FuzzParseTrustPolicy(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "trust", "*.yaml"))
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParseTrustPolicy("fuzz.yaml", data)
		if err != nil {
			return
		}
		for _, r := range p.Rules {
			if len(r.Match) == 0 || len(r.patterns) != len(r.Match) {
				t.Fatalf("accepted rule without compiled patterns: %+v", r)
			}
		}
		_ = p.Match("127.0.0.1:5000/team/bp")
	})
}
