package blueprint

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/nemoclaw/nemoclaw/runner/internal/strictyaml"
	"github.com/nemoclaw/nemoclaw/runner/policy"
)

// shape2026 is nemoclaw's own fixture written in the shape of NemoClaw's
// mid-2026 blueprint directory (issue 14; upstream's blueprint.yaml at
// 0f86cef, policies at 1504d6c, tiers.yaml at 3ae2adb): a base policy named
// by its path in OpenShell's image, a second (permissive) policy beside it,
// policies/tiers.yaml, raw tunnels written as access: full with tls: skip,
// and the 2026 fields nemoclaw keeps and reports. Its text and hosts are
// nemoclaw's own; upstream's files themselves are loaded unchanged by
// TestSharedNemoClawFixtures when they are placed under shared/fixtures.
var shape2026 = filepath.Join("testdata", "nemoclaw-shaped-2026")

// TestNemoClaw2026Shape loads the 2026-shaped blueprint: the image path maps
// to NemoClaw's own file name, the permissive policy and the tiers load and
// are reported, and every upstream field nemoclaw does not act on is a
// finding that names it. It failed before issue 14 (no single stand-in, and
// tiers.yaml was read as a policy).
func TestNemoClaw2026Shape(t *testing.T) {
	b, err := Load(shape2026)
	if err != nil {
		t.Fatalf("the 2026-shaped blueprint rejected: %v", err)
	}
	if want := filepath.ToSlash(filepath.Join(shape2026, "policies", "openclaw-sandbox.yaml")); b.PolicyFile != want {
		t.Errorf("policy file = %q, want %q (mapped from sandboxes/openclaw/policy.yaml)", b.PolicyFile, want)
	}
	if want := []string{filepath.ToSlash(filepath.Join(shape2026, "policies", "openclaw-sandbox-permissive.yaml"))}; !slices.Equal(b.OtherPolicies, want) {
		t.Errorf("other policies = %q, want %q", b.OtherPolicies, want)
	}
	if b.Tiers == nil || !slices.Equal(b.Tiers.Names(), []string{"minimal", "builder", "wide"}) {
		t.Fatalf("tiers = %+v, want minimal, builder, wide", b.Tiers)
	}
	if wide, _ := b.Tiers.Find("wide"); len(wide.Presets) != 3 || wide.Presets[0].Access != policy.TierAccessReadWrite || wide.Presets[2].Access != policy.TierAccessRead {
		t.Errorf("tier wide decoded as %+v", wide)
	}
	if _, ok := b.Policy.NetworkPolicies["model_cache"]; !ok {
		t.Error("components.policy.additions were not merged")
	}
	dial := b.Policy.NetworkPolicies["gateway_dialback"]
	if dial == nil || !dial.Endpoints[0].TunnelFullAccess() {
		t.Errorf("the dial-back tunnel (access: full, tls: skip) was not kept as written: %+v", dial)
	}
	if err := policy.Validate(b.Policy); err != nil {
		t.Errorf("the effective policy fails Validate, so the proxy would not compile it: %v", err)
	}
	if len(b.Available) != 3 {
		t.Errorf("%d presets available, want 3: %v", len(b.Available), sortedNames(b.Available))
	}
	if b.OpenShellTarget == nil || b.OpenShellTarget.Workspace != "fixture-ws" || b.Components.Identity == nil || b.Components.Identity.ClientIDEnv != "FIXTURE_CLIENT_ID" {
		t.Errorf("upstream fields not kept: %+v %+v", b.OpenShellTarget, b.Components.Identity)
	}
	findings := b.Findings.Error()
	for _, want := range []string{
		`blueprint.yaml:74:11: components.policy.base: policy base "sandboxes/openclaw/policy.yaml" is a path inside OpenShell's sandbox image; using policies/openclaw-sandbox.yaml`,
		"openclaw-sandbox-permissive.yaml: a second policy beside the base: validated, not applied",
		"openclaw-sandbox-permissive.yaml:46:39: network_policies.chat.endpoints[1].websocket_credential_rewrite: websocket_credential_rewrite is kept but not enforced",
		"openclaw-sandbox-permissive.yaml:40:42: network_policies.chat.endpoints[0].request_body_credential_rewrite: request_body_credential_rewrite is kept but not enforced",
		"openclaw-sandbox-permissive.yaml:49:30: network_policies.chat.endpoints[1].rules[1].allow.method: a WEBSOCKET_TEXT rule is kept but not enforced",
		"openclaw-sandbox-permissive.yaml:61:11: network_policies.storage.endpoints[0].credential_binding: credential_binding is kept but not enforced",
		"openclaw-sandbox-permissive.yaml:65:19: network_policies.storage.endpoints[1].protocol: JSON-RPC/MCP body inspection settings are kept but not enforced",
		"presets/chat-relay.yaml:21:30: network_policies.chat_relay.endpoints[1].rules[1].allow.method: a WEBSOCKET_TEXT rule is kept but not enforced",
		`tiers.yaml:14:17: tiers[1].presets[1].name: tier "builder" names preset "search", which is not in policies/presets`,
		`tiers.yaml:9:5: tiers[1]: tier "builder" is kept and reported, not applied: presets pkg-mirror (read-write), search (read)`,
		"blueprint.yaml:14:3: openshell_target: openshell_target is kept but not used",
		"blueprint.yaml:61:5: components.identity: components.identity is kept but not used",
		"max_openshell_version", "resource_profiles", "router is kept but not used",
	} {
		if !strings.Contains(findings, want) {
			t.Errorf("findings lack %q:\n%s", want, findings)
		}
	}
	if n := strings.Count(findings, "which is not in policies/presets"); n != 1 {
		t.Errorf("%d missing-preset warnings, want 1 (search in builder):\n%s", n, findings)
	}
}

// shape2026FS reads the 2026-shaped fixture into memory, so each variant
// below changes one file without touching the testdata.
func shape2026FS(t *testing.T) fstest.MapFS {
	t.Helper()
	fsys := fstest.MapFS{}
	err := filepath.WalkDir(shape2026, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(shape2026, p)
		fsys[filepath.ToSlash(rel)] = &fstest.MapFile{Data: data}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return fsys
}

// TestNemoClaw2026ShapeVariants: accepting upstream's new fields must not
// loosen strict decoding. Each variant changes the 2026-shaped fixture in one
// place; keys upstream does not define, values outside upstream's enums and
// policies that cannot be enforced stay errors at file:line:column.
func TestNemoClaw2026ShapeVariants(t *testing.T) {
	const (
		permissive = "policies/openclaw-sandbox-permissive.yaml"
		sandbox    = "policies/openclaw-sandbox.yaml"
		tiers      = "policies/tiers.yaml"
	)
	tests := []struct {
		name      string
		file      string // the file changed; "" with remove
		old, new  string // first occurrence of old becomes new
		remove    string // a file deleted instead
		at        string // file the first problem names
		line, col int
		want      string
	}{
		{name: "misspelt upstream endpoint key", file: permissive, old: "websocket_credential_rewrite: true", new: "websocket_credential_rewrites: true",
			at: permissive, line: 46, col: 9, want: `unknown field "websocket_credential_rewrites"`},
		{name: "body rewrite flag as a string", file: permissive, old: "request_body_credential_rewrite: true", new: `request_body_credential_rewrite: "yes"`,
			at: permissive, line: 40, col: 42, want: `expected true or false, got the string "yes"`},
		{name: "websocket frame deny rule", file: permissive, old: "        websocket_credential_rewrite: true\n", new: "        websocket_credential_rewrite: true\n        deny_rules:\n          - { method: WEBSOCKET_TEXT, path: \"/admin/**\" }\n",
			at: permissive, line: 48, col: 23, want: "a WEBSOCKET_TEXT deny rule cannot be enforced"},
		{name: "key upstream's tiers do not define", file: tiers, old: "label: Minimal", new: "lable: Minimal",
			at: tiers, line: 5, col: 5, want: `unknown field "lable"; valid fields here: description, label, name, presets`},
		{name: "tier access outside upstream's values", file: tiers, old: "{ name: pkg-mirror, access: read-write }", new: "{ name: pkg-mirror, access: write }",
			at: tiers, line: 13, col: 37, want: "value must be one of 'read', 'read-write'"},
		{name: "duplicate tier name", file: tiers, old: "name: builder", new: "name: minimal",
			at: tiers, line: 9, col: 11, want: `tier "minimal" is defined twice`},
		{name: "preset twice in a tier", file: tiers, old: "name: search,", new: "name: pkg-mirror,",
			at: tiers, line: 14, col: 17, want: `preset "pkg-mirror" is listed twice in tier "builder"`},
		{name: "tier presets not a list", file: tiers, old: "presets: []", new: "presets: {}",
			at: tiers, line: 7, col: 14, want: "expected a list, got a mapping"},
		{name: "read-only access on an unread tunnel", file: sandbox, old: "        access: full\n        tls: skip", new: "        access: read-only\n        tls: skip",
			at: sandbox, line: 44, col: 14, want: "tls skip leaves the traffic encrypted, so access could not be enforced"},
		{name: "second policy with an unknown section", file: permissive, old: "landlock:", new: "tool_policy: {}\nlandlock:",
			at: permissive, line: 14, col: 1, want: `unknown field "tool_policy"`},
		{name: "image path's own policy missing", remove: sandbox,
			at: "blueprint.yaml", line: 74, col: 11, want: `no policy file under policies/ stands in for it (policies/openclaw-sandbox.yaml for a path in OpenShell's image`},
		{name: "openshell_target key upstream does not define", file: "blueprint.yaml", old: "  lifecycle: external\n", new: "  lifecycle: external\n  insecure: true\n",
			at: "blueprint.yaml", line: 18, col: 3, want: `unknown field "insecure"`},
		{name: "openshell_target without its version gates", file: "blueprint.yaml", old: "max_openshell_version: \"0.0.41\"\n", new: "",
			at: "blueprint.yaml", line: 13, col: 3, want: "openshell_target needs min_openshell_version and max_openshell_version"},
		{name: "identity missing a required field", file: "blueprint.yaml", old: "    refresh_token_env: \"FIXTURE_REFRESH_TOKEN\"\n", new: "",
			at: "blueprint.yaml", line: 61, col: 5, want: "missing property 'refresh_token_env'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fsys := shape2026FS(t)
			if tt.remove != "" {
				delete(fsys, tt.remove)
			} else {
				data := string(fsys[tt.file].Data)
				if !strings.Contains(data, tt.old) {
					t.Fatalf("%s does not contain %q", tt.file, tt.old)
				}
				fsys[tt.file] = &fstest.MapFile{Data: []byte(strings.Replace(data, tt.old, tt.new, 1))}
			}
			_, err := LoadFS(fsys, "bp")
			if err == nil {
				t.Fatal("variant accepted")
			}
			ps := strictyaml.AsProblems(err)
			var got *strictyaml.Problem
			for _, p := range ps {
				if p.File == "bp/"+tt.at {
					got = p
					break
				}
			}
			if got == nil {
				t.Fatalf("no problem in %s: %v", tt.at, err)
			}
			if got.Line != tt.line || got.Column != tt.col || !strings.Contains(got.Message, tt.want) {
				t.Errorf("got %s:%d:%d %q, want %s:%d:%d containing %q", got.File, got.Line, got.Column, got.Message, tt.at, tt.line, tt.col, tt.want)
			}
		})
	}
}
