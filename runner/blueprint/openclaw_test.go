package blueprint

import (
	"slices"
	"testing"
)

// TestOpenClawBlueprint: the embedded OpenClaw blueprint loads, keeps
// OpenClaw's configuration read-only and its tools tree readable, lets
// nothing out but inference.local, and offers OpenClaw's own destinations
// (updates, plugins, docs, telemetry) as presets only.
func TestOpenClawBlueprint(t *testing.T) {
	b, err := OpenClaw()
	if err != nil {
		t.Fatal(err)
	}
	if b.Dir != EmbeddedOpenClaw || !slices.Equal(b.Components.Sandbox.Command, []string{"openclaw", "gateway", "run"}) {
		t.Errorf("dir %q, command %q", b.Dir, b.Components.Sandbox.Command)
	}
	fs := b.Policy.Filesystem
	for _, p := range []string{"/nemoclaw/tools", "/sandbox/.openclaw"} {
		if !slices.Contains(fs.ReadOnly, p) {
			t.Errorf("read_only lacks %s: %v", p, fs.ReadOnly)
		}
	}
	if b.Policy.Resources == nil || b.Policy.Resources.Memory != "4Gi" {
		t.Errorf("resources %+v: want the default 4Gi limit that Node agents must run under", b.Policy.Resources)
	}
	var groups []string
	for k := range b.Policy.NetworkPolicies {
		groups = append(groups, k)
	}
	if !slices.Equal(groups, []string{"inference"}) {
		t.Errorf("network policy groups %v, want only inference", groups)
	}
	for _, p := range []string{"openclaw-updates", "openclaw-plugins", "openclaw-docs", "openclaw-telemetry"} {
		if b.Available[p] == nil {
			t.Errorf("preset %s missing; available: %v", p, sortedNames(b.Available))
		}
	}
	for _, p := range []string{"nvidia", "ollama", "vllm"} {
		if b.Components.Inference.Profiles[p] == nil {
			t.Errorf("profile %s missing", p)
		}
	}
	env := b.Components.Sandbox.Env
	if env["OPENCLAW_CONFIG_PATH"] != "/sandbox/.openclaw/openclaw.json" || env["OPENCLAW_STATE_DIR"] != "/sandbox/.openclaw-data" {
		t.Errorf("env %v", env)
	}
}
