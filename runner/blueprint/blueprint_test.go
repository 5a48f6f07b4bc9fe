package blueprint

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/nemoclaw/nemoclaw/runner/internal/strictyaml"
	"github.com/nemoclaw/nemoclaw/runner/policy"
	runnerversion "github.com/nemoclaw/nemoclaw/runner/version"
)

// minimalPolicy is the base policy every invalid-blueprint fixture points at,
// so each fixture fails for its own reason only.
const minimalPolicy = "version: 1\nfilesystem_policy:\n  read_only: [/usr]\n"

const pypiPreset = `preset: {name: pypi, description: "PyPI"}
network_policies:
  pypi: {endpoints: [{host: pypi.org, port: 443, access: read-only}]}
`

// loadFixture loads testdata/invalid/NAME.yaml as blueprint.yaml beside a
// minimal policy and one preset.
func loadFixture(t *testing.T, name string) (string, error) {
	t.Helper()
	dir := filepath.Join("testdata", "invalid", name)
	data, err := os.ReadFile(dir + ".yaml")
	if err != nil {
		t.Fatal(err)
	}
	fsys := fstest.MapFS{
		"blueprint.yaml":             {Data: data},
		"policies/sandbox.yaml":      {Data: []byte(minimalPolicy)},
		"policies/presets/pypi.yaml": {Data: []byte(pypiPreset)},
	}
	_, err = LoadFS(fsys, dir)
	return filepath.ToSlash(filepath.Join(dir, FileName)), err
}

func TestInvalidBlueprints(t *testing.T) {
	tests := []struct {
		name      string
		line, col int
		want      string
	}{
		{"unknown-top", 3, 1, `unknown field "component"; valid fields here:`},
		{"unknown-sandbox-field", 6, 5, `unknown field "entrypoint"`},
		{"bad-version", 1, 10, "does not match pattern"},
		{"version-number", 1, 10, "got number, want string"},
		{"missing-profile", 2, 21, `profile "fast" is declared but components.inference.profiles has no "fast"`},
		{"bad-default-profile", 3, 18, `default_profile "gpu" is not defined; defined: default`},
		{"bad-endpoint-url", 8, 19, "is not an http(s) URL"},
		{"unknown-provider", 7, 24, `provider_type "acme" has no built-in backend`},
		{"bad-sandbox-name", 4, 11, "does not match pattern"},
		{"bad-forward-port", 5, 21, "minimum: got 0, want 1"},
		{"missing-base", 4, 11, `policy base "policies/nope.yaml" is not in the blueprint directory`},
		{"unknown-preset", 2, 17, `preset "bogus" is not in policies/presets; available: pypi`},
		{"addition-bad-host", 9, 19, `would allow every host`},
		{"credential-in-url", 8, 19, "must not embed credentials"},
		{"bad-timeout", 9, 23, "minimum: got 0, want 1"},
		{"bad-alias", 9, 18, `alias " gpt-4o" is empty or has surrounding spaces`},
		{"duplicate-profile-key", 6, 7, `duplicate key "default"`},
		{"relative-workdir", 5, 14, "must be an absolute host path"},
		{"bad-gpu", 5, 29, "does not match pattern"},
		{"gpu-count-and-devices", 5, 14, "give count or devices, not both"},
		{"gpu-bad-device", 4, 15, "does not match pattern"},
		{"bad-plugin-sha256", 9, 17, "does not match pattern"},
		// Issue 13 item 21: anchors and aliases are refused in blueprints too.
		{"anchor", 6, 10, "YAML anchors and aliases are not supported (anchor &ep); write the value out"},
		// Issue 13 item 22: blueprint validate refuses what sandbox run would.
		{"addition-tcp-access-read-only", 9, 59, "protocol tcp is a plain tunnel the proxy does not read, so it cannot apply access"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file, err := loadFixture(t, tt.name)
			if err == nil {
				t.Fatal("blueprint accepted")
			}
			ps := strictyaml.AsProblems(err)
			if len(ps) == 0 {
				t.Fatalf("error is not located: %v", err)
			}
			var got *strictyaml.Problem
			for _, p := range ps {
				if strings.Contains(p.Message, tt.want) {
					got = p
				}
			}
			if got == nil {
				t.Fatalf("no problem says %q; got:\n%v", tt.want, err)
			}
			if got.File != file || got.Line != tt.line || got.Column != tt.col {
				t.Errorf("located at %s:%d:%d, want %s:%d:%d", got.File, got.Line, got.Column, file, tt.line, tt.col)
			}
		})
	}
	entries, _ := os.ReadDir(filepath.Join("testdata", "invalid"))
	if len(entries) != len(tests) {
		t.Errorf("%d invalid fixtures but %d test cases", len(entries), len(tests))
	}
}

// TestNemoClawBlueprint loads NemoClaw's real blueprint directory unchanged
// and checks that what nemoclaw does not act on is reported, not dropped.
func TestNemoClawBlueprint(t *testing.T) {
	b, err := Load(filepath.Join("testdata", "nemoclaw-blueprint"))
	if err != nil {
		t.Fatalf("NemoClaw blueprint rejected: %v", err)
	}
	if b.Version != "0.1.0" || len(b.Profiles) != 4 || b.Components.Sandbox.Name != "openclaw" {
		t.Errorf("decoded blueprint lost data: %+v", b)
	}
	if !strings.HasSuffix(b.PolicyFile, "policies/openclaw-sandbox.yaml") {
		t.Errorf("policy file = %q, want the stand-in policies/openclaw-sandbox.yaml", b.PolicyFile)
	}
	if _, ok := b.Policy.NetworkPolicies["nim_service"]; !ok {
		t.Error("components.policy.additions were not merged")
	}
	if len(b.Available) != 9 {
		t.Errorf("%d presets available, want 9", len(b.Available))
	}
	findings := b.Findings.Error()
	for _, want := range []string{"min_openshell_version", "image", "forward_ports", "sandboxes/openclaw/policy.yaml", "dynamic endpoint"} {
		if !strings.Contains(findings, want) {
			t.Errorf("findings lack %q:\n%s", want, findings)
		}
	}
	for _, name := range b.Profiles {
		if _, p, ok := b.Profile(name); !ok || p.ProviderType == "" {
			t.Errorf("profile %s missing", name)
		}
	}
}

func TestDefaultBlueprint(t *testing.T) {
	b, err := Default()
	if err != nil {
		t.Fatalf("embedded default blueprint is invalid: %v", err)
	}
	if len(b.Findings) != 0 {
		t.Errorf("default blueprint has findings: %v", b.Findings)
	}
	for _, want := range []string{"pypi", "npm", "github", "huggingface", "slack", "telegram", "discord", "jira", "outlook", "docker"} {
		if _, ok := b.Available[want]; !ok {
			t.Errorf("preset %q missing from the default blueprint", want)
		}
	}
	for _, want := range []string{"nvidia", "ollama", "vllm"} {
		if _, _, ok := b.Profile(want); !ok {
			t.Errorf("inference profile %q missing", want)
		}
	}
	p := b.Policy
	if p.Filesystem == nil || !p.Filesystem.IncludeWorkdir {
		t.Error("default policy must give the agent its workspace")
	}
	for _, rw := range p.Filesystem.ReadWrite {
		if rw == "/" || rw == "/usr" || rw == "/etc" || strings.HasPrefix(rw, "/home") || strings.HasPrefix(rw, "/root") {
			t.Errorf("default policy makes %s writable", rw)
		}
	}
	if len(p.NetworkPolicies) != 1 || p.NetworkPolicies["inference"] == nil {
		t.Errorf("default policy must allow inference only, got %d groups", len(p.NetworkPolicies))
	}
	if err := CheckGates(b); err != nil {
		t.Errorf("default blueprint does not pass its own gate: %v", err)
	}
	dp, err := DefaultPolicy()
	if err != nil || dp == nil {
		t.Fatalf("DefaultPolicy: %v", err)
	}
}

func TestPresetsMerged(t *testing.T) {
	fsys := fstest.MapFS{
		"blueprint.yaml":             {Data: []byte("version: \"1.0.0\"\npresets: [pypi]\ncomponents:\n  policy: {base: policies/sandbox.yaml}\n")},
		"policies/sandbox.yaml":      {Data: []byte(minimalPolicy)},
		"policies/presets/pypi.yaml": {Data: []byte(pypiPreset)},
	}
	b, err := LoadFS(fsys, "mem")
	if err != nil {
		t.Fatal(err)
	}
	if b.Policy.NetworkPolicies["pypi"] == nil {
		t.Fatal("preset listed in presets was not merged into the policy")
	}
}

func TestGates(t *testing.T) {
	tests := []struct {
		min  string
		want bool
	}{{"", true}, {"0.0.1", true}, {runnerversion.Version, true}, {"99.0.0", false}}
	for _, tt := range tests {
		err := CheckGates(&Blueprint{MinRunnerVersion: tt.min})
		if (err == nil) != tt.want {
			t.Errorf("min_runner_version %q: err = %v", tt.min, err)
		}
		if err != nil && !strings.Contains(err.Error(), "upgrade nemoclaw") {
			t.Errorf("gate error does not say what to do: %v", err)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	if _, err := Load(filepath.Join("testdata", "does-not-exist")); err == nil {
		t.Error("missing directory accepted")
	}
	if _, err := LoadFS(fstest.MapFS{}, "empty"); err == nil || !strings.Contains(err.Error(), "no blueprint.yaml") {
		t.Errorf("empty directory: %v", err)
	}
	fsys := fstest.MapFS{"blueprint.yaml": {Data: []byte("version: \"1.0.0\"\ncomponents: {}\n")}}
	if _, err := LoadFS(fsys, "nopolicy"); err == nil || !strings.Contains(err.Error(), "no sandbox policy") {
		t.Errorf("blueprint without policy: %v", err)
	}
}

// FuzzLoad feeds arbitrary blueprint.yaml documents to the loader.
func FuzzLoad(f *testing.F) {
	for _, file := range append(globs("testdata/invalid/*.yaml"), "testdata/nemoclaw-blueprint/blueprint.yaml", "testdata/nemoclaw-shaped-2026/blueprint.yaml", "../../blueprints/default/blueprint.yaml") {
		if data, err := os.ReadFile(file); err == nil {
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fsys := fstest.MapFS{
			"blueprint.yaml":        {Data: data},
			"policies/sandbox.yaml": {Data: []byte(minimalPolicy)},
		}
		b, err := LoadFS(fsys, "fuzz")
		if err != nil {
			return
		}
		if b.Policy == nil {
			t.Fatal("accepted blueprint has no policy")
		}
		if _, err := policy.Canonical(b.Policy); err != nil {
			t.Fatal(err)
		}
	})
}

func globs(p string) []string {
	m, _ := filepath.Glob(p)
	return m
}

// TestGateReadsRunnerVersion: the gate compares against runner/version, the
// value `nemoclaw version` prints, and the development default passes the
// gate of the blueprint shipped with this tree.
func TestGateReadsRunnerVersion(t *testing.T) {
	defer func(v string) { runnerversion.Version = v }(runnerversion.Version)
	b, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	if b.MinRunnerVersion == "" {
		t.Fatal("the embedded default blueprint sets no min_runner_version")
	}
	tests := []struct {
		version string
		refused string // "" when the gate passes
	}{
		{runnerversion.Version, ""},
		{"0.0.1", "needs nemoclaw >= " + b.MinRunnerVersion + " (min_runner_version) but this is 0.0.1"},
		{"a815afc", "nemoclaw's own version \"a815afc\""},
	}
	for _, tt := range tests {
		runnerversion.Version = tt.version
		err := CheckGates(b)
		if tt.refused == "" && err != nil || tt.refused != "" && (err == nil || !strings.Contains(err.Error(), tt.refused)) {
			t.Errorf("runner version %q: CheckGates = %v, want refusal %q", tt.version, err, tt.refused)
		}
	}
}

func TestDefaultProfileName(t *testing.T) {
	one := &Inference{Profiles: map[string]*InferenceProfile{"echo": {}}}
	two := &Inference{Profiles: map[string]*InferenceProfile{"a": {}, "b": {}}}
	for _, tc := range []struct {
		name string
		b    Blueprint
		want string
	}{
		{"default_profile wins", Blueprint{DefaultProfile: "b", Profiles: []string{"a"}, Components: Components{Inference: two}}, "b"},
		{"first of profiles", Blueprint{Profiles: []string{"a", "b"}, Components: Components{Inference: two}}, "a"},
		{"the only inference profile", Blueprint{Components: Components{Inference: one}}, "echo"},
		{"several, no default", Blueprint{Components: Components{Inference: two}}, ""},
		{"no inference", Blueprint{}, ""},
	} {
		if got := tc.b.DefaultProfileName(); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}
