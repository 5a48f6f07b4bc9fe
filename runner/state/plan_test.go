package state

import (
	"strings"
	"testing"

	"github.com/nemoclaw/nemoclaw/runner/blueprint"
	"github.com/nemoclaw/nemoclaw/runner/policy"
)

func testBlueprint() *blueprint.Blueprint {
	return &blueprint.Blueprint{
		Version:  "1.0.0",
		Dir:      "mem",
		Profiles: []string{"cloud", "local", "dyn"},
		Components: blueprint.Components{
			Sandbox: &blueprint.Sandbox{Name: "coder", Command: []string{"agent", "--serve"}, Env: map[string]string{"B": "2", "A": "1"}},
			Inference: &blueprint.Inference{Profiles: map[string]*blueprint.InferenceProfile{
				"cloud": {ProviderType: "nvidia", Endpoint: "https://integrate.api.nvidia.com/v1", Model: "m", CredentialEnv: "NV_KEY"},
				"local": {ProviderType: "ollama", Endpoint: "http://127.0.0.1:11434", Model: "llama"},
				"dyn":   {ProviderType: "openai", DynamicEndpoint: true},
			}},
		},
		Policy: &policy.Policy{Version: 1,
			Filesystem: &policy.FilesystemPolicy{IncludeWorkdir: true, ReadOnly: []string{"/usr"}},
			NetworkPolicies: map[string]*policy.NetworkPolicy{
				"gh": {Endpoints: []*policy.Endpoint{{Host: "github.com", Port: 443, Access: policy.AccessReadOnly}}, Binaries: []*policy.Binary{{Path: "/usr/bin/git"}}},
			}},
	}
}

func TestMakePlan(t *testing.T) {
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	tests := []struct {
		name     string
		opts     PlanOptions
		setup    func(b *blueprint.Blueprint)
		refusals []string
		check    func(t *testing.T, p *Plan)
	}{
		{name: "default profile, credential missing", opts: PlanOptions{Home: "/h"},
			check: func(t *testing.T, p *Plan) {
				if p.Inference.Profile != "cloud" || p.Inference.CredentialPresent || p.Inference.Plugin != "nemoclaw-inference-nvidia" {
					t.Errorf("inference = %+v", p.Inference)
				}
				if p.Sandbox.Workspace != "/h/sandboxes/coder/workspace" || strings.Join(p.Sandbox.EnvKeys, ",") != "A,B" {
					t.Errorf("sandbox = %+v", p.Sandbox)
				}
				if p.Policy.ReadWrite[0] != "/sandbox" || p.Policy.Network[0].Endpoints[0] != "github.com:443 rest enforce access=read-only" {
					t.Errorf("policy = %+v", p.Policy)
				}
				found := false
				for _, c := range p.Preflight {
					found = found || (strings.Contains(c.Name, "NV_KEY") && !c.OK)
				}
				if !found {
					t.Error("a missing credential is not in preflight")
				}
			}},
		{name: "local profile needs no credential", opts: PlanOptions{Profile: "local", Name: "other"},
			check: func(t *testing.T, p *Plan) {
				if !p.Inference.CredentialPresent || p.Sandbox.Name != "other" {
					t.Errorf("plan = %+v %+v", p.Inference, p.Sandbox)
				}
			}},
		{name: "dynamic endpoint refuses", opts: PlanOptions{Profile: "dyn"}, refusals: []string{"dynamic endpoint"}},
		{name: "version gate refuses", setup: func(b *blueprint.Blueprint) { b.MinRunnerVersion = "99.0.0" }, refusals: []string{"needs nemoclaw >= 99.0.0"}},
		{name: "fatal preflight refuses", opts: PlanOptions{Preflight: []Check{{Name: "seccomp", OK: false, Fatal: true, Detail: "missing"}, {Name: "nvml", OK: false}}},
			refusals: []string{"seccomp: missing"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := testBlueprint()
			if tt.setup != nil {
				tt.setup(b)
			}
			tt.opts.Getenv = getenv
			p, err := MakePlan(b, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Refusals) != len(tt.refusals) {
				t.Fatalf("refusals = %q, want %q", p.Refusals, tt.refusals)
			}
			for i, r := range tt.refusals {
				if !strings.Contains(p.Refusals[i], r) {
					t.Errorf("refusal %q lacks %q", p.Refusals[i], r)
				}
			}
			if tt.check != nil {
				tt.check(t, p)
			}
		})
	}
	env["NV_KEY"] = "secret"
	p, err := MakePlan(testBlueprint(), PlanOptions{Getenv: getenv})
	if err != nil || !p.Inference.CredentialPresent {
		t.Fatalf("credential set: %+v %v", p.Inference, err)
	}
	if _, err := MakePlan(testBlueprint(), PlanOptions{Profile: "nope"}); err == nil || !strings.Contains(err.Error(), "choose one of: cloud, dyn, local") {
		t.Errorf("unknown profile: %v", err)
	}
}
