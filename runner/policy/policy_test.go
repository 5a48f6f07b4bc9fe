package policy

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nemoclaw/nemoclaw/runner/internal/strictyaml"
)

// TestInvalidPolicies checks that every invalid fixture is refused with an
// error naming its file, the exact line and column, and what is wrong.
func TestInvalidPolicies(t *testing.T) {
	tests := []struct {
		file      string
		line, col int
		want      string
	}{
		{"unknown-top", 4, 1, `unknown field "network_policy"; valid fields here: filesystem_policy`},
		{"unknown-endpoint-field", 7, 9, `unknown field "method"`},
		{"duplicate-key", 6, 3, `duplicate key "api" (first defined at line 3)`},
		{"duplicate-field", 4, 3, `duplicate key "compatibility"`},
		{"version-2", 1, 10, "value must be 1"},
		{"version-missing", 1, 1, "missing property 'version'"},
		{"version-string", 1, 10, `expected an integer, got the string "one"`},
		{"relative-path", 5, 7, "does not match pattern '^/'"},
		{"dotdot-path", 4, 7, "contains '..'"},
		{"root-read-write", 5, 7, "'/' can never be read-write"},
		{"landlock-mode", 3, 18, "'best_effort', 'hard_requirement'"},
		{"port-zero", 6, 15, "minimum: got 0, want 1"},
		{"port-too-big", 6, 22, "want 65,535"},
		{"port-missing", 5, 9, "has no port"},
		{"port-string", 6, 15, `expected an integer, got the string "https"`},
		{"bare-star-host", 5, 15, "would allow every host"},
		{"tld-wildcard", 5, 15, "wildcards a whole top-level domain"},
		{"mid-wildcard", 5, 15, "wildcards must be the leftmost labels"},
		{"host-with-scheme", 5, 15, "without scheme, port or path"},
		{"rules-and-access", 7, 17, "rules and access are exclusive"},
		{"bad-access", 7, 17, "'read-only', 'read-write', 'full'"},
		{"bad-method", 8, 30, `method "FETCH" is not an HTTP method`},
		{"relative-rule-path", 8, 41, "does not match pattern"},
		{"rule-without-allow", 8, 13, `unknown field "deny"; valid fields here: allow`},
		{"tcp-with-rules", 7, 19, "protocol tcp is a plain tunnel"},
		{"passthrough-with-rules", 7, 14, "tls passthrough leaves the traffic encrypted"},
		{"bad-protocol", 7, 19, "'rest', 'websocket', 'tcp'"},
		{"bad-allowed-ip", 7, 23, `"10.0.0.300" is not an IP or CIDR`},
		{"metadata-allowed-ip", 7, 23, "link-local"},
		{"relative-binary", 7, 15, "does not match pattern '^/'"},
		{"no-endpoints", 4, 5, `network policy "x" has no endpoints`},
		{"credential-two-sources", 8, 13, "needs exactly one of env or file"},
		{"bad-memory", 3, 11, `byte quantity "lots": unknown suffix`},
		{"endpoints-not-list", 5, 7, "expected a list, got a mapping"},
		{"bool-as-string", 3, 20, `expected true or false, got the string "yes"`},
		{"syntax-error", 4, 0, "did not find expected"},
		{"two-documents", 2, 1, "more than one YAML document"},
		{"empty", 1, 1, "document is empty"},
		{"query-unknown", 12, 22, `unknown field "pattern"; valid fields here: any, glob`},
		// Issue 13 item 21: anchors and aliases are refused at the first one.
		{"aliases-80", 39, 14, "YAML anchors and aliases are not supported (anchor &field); write the value out"},
		// Issue 13 item 22: what the egress proxy refused, Check refuses.
		{"tcp-with-access-read-only", 10, 19, "protocol tcp is a plain tunnel the proxy does not read, so it cannot apply access"},
		{"tcp-with-path", 7, 19, "cannot apply path"},
		{"passthrough-with-credentials", 7, 14, "tls passthrough leaves the traffic encrypted, so credentials could not be enforced"},
		{"sql-protocol", 7, 19, "protocol sql is not supported"},
		{"upstream-selector", 9, 20, "which nemoclaw does not inspect"},
		{"metadata-host", 5, 15, "is a cloud metadata name"},
		{"link-local-host", 5, 15, "never reachable"},
		{"loose-ipv4-host", 5, 15, "non-canonical IPv4 form"},
		{"mapped-metadata-allowed-ip", 7, 23, "never reachable"},
		{"rule-path-any", 8, 41, "does not match pattern '^/'"},
		{"bad-glob-path", 8, 41, `path "/v1/[a" is a bad glob`},
		{"bad-endpoint-path", 7, 15, "is a bad glob"},
		{"query-empty", 12, 20, `query "q" has no pattern`},
		{"binary-bad-glob", 7, 15, "is a bad glob"},
		{"untyped-int-key", 7, 9, "keys here must be strings, got the integer 1"},
		{"untyped-infinity", 6, 14, ".inf is not a finite number"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			file := filepath.Join("testdata", "invalid", tt.file+".yaml")
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			p, _, err := Check(file, data)
			if err == nil {
				t.Fatalf("Check accepted %s: %+v", file, p)
			}
			ps := strictyaml.AsProblems(err)
			if len(ps) == 0 {
				t.Fatalf("error is not located: %v", err)
			}
			got := ps[0]
			if got.File != file || got.Line != tt.line || got.Column != tt.col {
				t.Errorf("located at %s:%d:%d, want %s:%d:%d (%v)", got.File, got.Line, got.Column, file, tt.line, tt.col, got)
			}
			if !strings.Contains(got.Message, tt.want) {
				t.Errorf("message %q does not contain %q", got.Message, tt.want)
			}
		})
	}
	entries, _ := os.ReadDir(filepath.Join("testdata", "invalid"))
	if len(entries) != len(tests) {
		t.Errorf("%d invalid fixtures but %d test cases: give every fixture an expectation", len(entries), len(tests))
	}
}

// TestNemoClawFixtures loads NemoClaw's real policy and presets unchanged.
func TestNemoClawFixtures(t *testing.T) {
	// Copies of NemoClaw's files (Apache-2.0, NVIDIA), unchanged.
	dir := filepath.Join("testdata", "valid")
	data, err := os.ReadFile(filepath.Join(dir, "openclaw-sandbox.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	p, _, err := Check("openclaw-sandbox.yaml", data)
	if err != nil {
		t.Fatalf("NemoClaw policy rejected: %v", err)
	}
	if len(p.NetworkPolicies) != 9 || p.Process.RunAsUser != "sandbox" || p.Landlock.HardRequired() {
		t.Errorf("decoded policy lost data: %d network policies, user %q", len(p.NetworkPolicies), p.Process.RunAsUser)
	}
	presets, _ := filepath.Glob(filepath.Join(dir, "presets", "*.yaml"))
	if len(presets) < 9 {
		t.Fatalf("found %d NemoClaw presets, want 9", len(presets))
	}
	for _, f := range presets {
		data, _ := os.ReadFile(f)
		pr, _, err := ParsePreset(f, data)
		if err != nil {
			t.Errorf("preset %s rejected: %v", f, err)
			continue
		}
		if pr.Meta.Name == "" || len(pr.NetworkPolicies) == 0 {
			t.Errorf("preset %s decoded empty", f)
		}
	}
}

func TestQueryMatcherForms(t *testing.T) {
	p, err := Parse("q.yaml", []byte(`version: 1
network_policies:
  s:
    endpoints:
      - host: api.example.com
        port: 443
        rules:
          - allow:
              method: GET
              path: /search
              query:
                a: "x*"
                b: { glob: "y" }
                c: { any: ["1", "2"] }
`))
	if err != nil {
		t.Fatal(err)
	}
	q := p.NetworkPolicies["s"].Endpoints[0].Rules[0].Allow.Query
	if got := q["a"].Patterns(); len(got) != 1 || got[0] != "x*" {
		t.Errorf("a = %v", got)
	}
	if got := q["b"].Patterns(); len(got) != 1 || got[0] != "y" {
		t.Errorf("b = %v", got)
	}
	if got := q["c"].Patterns(); len(got) != 2 {
		t.Errorf("c = %v", got)
	}
}

func TestWarnings(t *testing.T) {
	_, warns, err := Check("w.yaml", []byte(`version: 1
network_policies:
  local:
    endpoints:
      - host: ollama.local
        port: 11434
        allowed_ips: [127.0.0.1]
      - host: db.example.com
        port: 443
        protocol: graphql
        access: read-only
`))
	if err != nil {
		t.Fatal(err)
	}
	joined := warns.Error()
	for _, want := range []string{"w.yaml:7:23", "opens a loopback or private range", "w.yaml:10:19", "protocol graphql is inspected as plain HTTP"} {
		if !strings.Contains(joined, want) {
			t.Errorf("warnings %q lack %q", joined, want)
		}
	}
}

func TestMerge(t *testing.T) {
	base := &Policy{Version: 1, NetworkPolicies: map[string]*NetworkPolicy{
		"github": {Endpoints: []*Endpoint{{Host: "github.com", Port: 443, Access: AccessReadOnly}}},
		"keep":   {Endpoints: []*Endpoint{{Host: "keep.example.com", Port: 443}}},
	}}
	pr := &Preset{Meta: PresetMeta{Name: "github"}, NetworkPolicies: map[string]*NetworkPolicy{
		"github": {Endpoints: []*Endpoint{{Host: "github.com", Port: 443, Access: AccessFull}}},
		"api":    {Endpoints: []*Endpoint{{Host: "api.github.com", Port: 443}}},
	}}
	got, cs := Merge(base, pr)
	if len(cs) != 1 || cs[0].Key != "github" || !strings.Contains(cs[0].String(), `preset "github"`) {
		t.Fatalf("collisions = %v, want one on github", cs)
	}
	if got.NetworkPolicies["github"].Endpoints[0].Access != AccessFull {
		t.Error("the preset did not win the collision")
	}
	if len(got.NetworkPolicies) != 3 {
		t.Errorf("merged %d groups, want 3", len(got.NetworkPolicies))
	}
	if base.NetworkPolicies["github"].Endpoints[0].Access != AccessReadOnly {
		t.Error("Merge modified its input")
	}
	pr.NetworkPolicies["api"].Endpoints[0].Host = "changed"
	if got.NetworkPolicies["api"].Endpoints[0].Host != "api.github.com" {
		t.Error("Merge shares memory with the preset")
	}
}

func TestNormalizeAndCanonical(t *testing.T) {
	p := &Policy{Version: 1,
		Filesystem: &FilesystemPolicy{ReadOnly: []string{"/usr", "/etc", "/usr"}},
		NetworkPolicies: map[string]*NetworkPolicy{
			"b": {Endpoints: []*Endpoint{{Host: "b.example.com", Port: 443}}},
			"a": {Endpoints: []*Endpoint{{Host: "a.example.com", Ports: []int{80, 443}, Enforcement: Audit}}},
		}}
	n := Normalize(p)
	e := n.NetworkPolicies["b"].Endpoints[0]
	if e.Port != 0 || len(e.Ports) != 1 || e.Ports[0] != 443 || e.Enforcement != Enforce || e.Protocol != ProtoREST {
		t.Errorf("endpoint not normalised: %+v", e)
	}
	if n.NetworkPolicies["b"].Name != "b" || n.Landlock.Compatibility != BestEffort {
		t.Error("defaults not made explicit")
	}
	if got := n.Filesystem.ReadOnly; len(got) != 2 || got[0] != "/etc" {
		t.Errorf("read_only = %v, want sorted and unique", got)
	}
	c1, err := Canonical(p)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse("canonical.yaml", c1)
	if err != nil {
		t.Fatalf("canonical form does not parse: %v\n%s", err, c1)
	}
	c2, _ := Canonical(back)
	if string(c1) != string(c2) {
		t.Errorf("canonical form is not a fixed point:\n%s\n---\n%s", c1, c2)
	}
	if strings.Index(string(c1), "a:") > strings.Index(string(c1), "b:") {
		t.Error("network policies are not sorted by key")
	}
}

func TestDiffStatic(t *testing.T) {
	a := &Policy{Version: 1, Filesystem: &FilesystemPolicy{ReadOnly: []string{"/usr"}}, Process: &ProcessPolicy{RunAsUser: "sandbox"}}
	b := Clone(a)
	b.NetworkPolicies = map[string]*NetworkPolicy{"x": {Endpoints: []*Endpoint{{Host: "x.example.com", Port: 443}}}}
	if d := DiffStatic(a, b); len(d) != 0 {
		t.Errorf("network change reported as static: %v", d)
	}
	b.Filesystem.ReadOnly = append(b.Filesystem.ReadOnly, "/etc")
	b.Process.RunAsUser = "root"
	if d := DiffStatic(a, b); strings.Join(d, ",") != "filesystem_policy,process" {
		t.Errorf("DiffStatic = %v, want filesystem_policy,process", d)
	}
}

func TestCheckHostPattern(t *testing.T) {
	tests := []struct {
		host string
		ok   bool
	}{
		{"api.example.com", true}, {"*.example.com", true}, {"**.example.com", true},
		{"*.*.example.com", true}, {"127.0.0.1", true}, {"::1", true}, {"[::1]", true},
		{"localhost", true}, {"*", false}, {"**", false}, {"*.com", false}, {"**.io", false},
		{"a*.example.com", false}, {"api.*.com", false}, {"exa mple.com", false},
		{"example.com:443", false}, {"a..b", false}, {"", false},
	}
	for _, tt := range tests {
		err := CheckHostPattern(tt.host)
		if (err == nil) != tt.ok {
			t.Errorf("CheckHostPattern(%q) = %v, want ok=%v", tt.host, err, tt.ok)
		}
	}
}

func TestParseBytes(t *testing.T) {
	tests := []struct {
		in   string
		want uint64
		err  bool
	}{
		{"1048576", 1 << 20, false},
		{"512Mi", 512 << 20, false},
		{"2G", 2e9, false},
		{"1.5Gi", 3 << 29, false},
		{"4k", 4000, false},
		{"4Ki", 4096, false},
		{" 1GiB ", 1 << 30, false},
		{"", 0, true},
		{"10m", 0, true},
		{"-1", 0, true},
		{"12Qi", 0, true},
		{"Mi", 0, true},
		{"1e400", 0, true},
	}
	for _, tc := range tests {
		got, err := ParseBytes(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d, err=%v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestParseCPU(t *testing.T) {
	tests := []struct {
		in   string
		want int
		err  bool
	}{
		{"1", 1000, false}, {"1.5", 1500, false}, {"500m", 500, false}, {"0.001", 1, false},
		{"0", 0, true}, {"-1", 0, true}, {"abc", 0, true}, {"m", 0, true}, {"NaN", 0, true},
	}
	for _, tc := range tests {
		got, err := ParseCPU(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ParseCPU(%q) = %d, %v; want %d, err=%v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func FuzzParseBytes(f *testing.F) {
	for _, s := range []string{"512Mi", "2G", "1.5Gi", "", "10m", "9999999999999999Ti", "0x10", ".", "1e3k"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseBytes(s)
		if err == nil && v >= 1<<63 {
			t.Fatalf("ParseBytes(%q) = %d: out of range accepted", s, v)
		}
	})
}

func FuzzParseCPU(f *testing.F) {
	for _, s := range []string{"1", "1.5", "500m", "0", "m", "1e9", "-0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseCPU(s)
		if err == nil && v <= 0 {
			t.Fatalf("ParseCPU(%q) = %d accepted", s, v)
		}
	})
}

// TestValidateFromNoFile: a policy that comes from no file (merged, or sent
// over the control socket) is checked by the same schema and rules as a
// file, and its problems name the field path alone.
func TestValidateFromNoFile(t *testing.T) {
	ep := func(mod func(*Endpoint)) *Policy {
		e := &Endpoint{Host: "db.example.com", Port: 5432}
		mod(e)
		return &Policy{Version: 1, NetworkPolicies: map[string]*NetworkPolicy{"db": {Endpoints: []*Endpoint{e}}}}
	}
	tests := []struct {
		name string
		p    *Policy
		want string // "" for valid
	}{
		{"valid", ep(func(e *Endpoint) { e.Protocol = ProtoTCP }), ""},
		{"tcp with access read-only", ep(func(e *Endpoint) { e.Protocol, e.Access = ProtoTCP, AccessReadOnly }),
			"network_policies.db.endpoints[0].protocol: protocol tcp is a plain tunnel the proxy does not read, so it cannot apply access"},
		{"tls skip with access read-write", ep(func(e *Endpoint) { e.TLS, e.Access = "skip", AccessReadWrite }),
			"network_policies.db.endpoints[0].tls: tls skip leaves the traffic encrypted, so access could not be enforced"},
		// Issue 14: access: full on a tunnel is the tunnel (NemoClaw's
		// "access: full, tls: skip").
		{"tcp with access full", ep(func(e *Endpoint) { e.Protocol, e.Access = ProtoTCP, AccessFull }), ""},
		{"tls skip with access full", ep(func(e *Endpoint) { e.TLS, e.Access = "skip", AccessFull }), ""},
		{"tls passthrough with access full", ep(func(e *Endpoint) { e.TLS, e.Access = "passthrough", AccessFull }), ""},
		{"websocket frame deny", ep(func(e *Endpoint) {
			e.Protocol, e.DenyRules = ProtoWebSocket, []*Matcher{{Method: "websocket_text", Path: "/**"}}
		}), "network_policies.db.endpoints[0].deny_rules[0].method: a WEBSOCKET_TEXT deny rule cannot be enforced"},
		{"tls skip with access full and a path", ep(func(e *Endpoint) { e.TLS, e.Access, e.Path = "skip", AccessFull, "/v1/**" }),
			"network_policies.db.endpoints[0].tls: tls skip leaves the traffic encrypted, so path could not be enforced"},
		{"schema enum", ep(func(e *Endpoint) { e.TLS = "open" }),
			"network_policies.db.endpoints[0].tls: value must be one of"},
		{"schema integer", ep(func(e *Endpoint) { e.Ports = []int{70000} }),
			"network_policies.db.endpoints[0].ports[0]: maximum: got 70,000, want 65,535"},
		{"version", &Policy{}, "version: value must be 1"},
		{"filesystem", &Policy{Version: 1, Filesystem: &FilesystemPolicy{ReadWrite: []string{"/"}}},
			"filesystem_policy.read_write[0]: '/' can never be read-write"},
		{"nil", nil, "no policy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Validate(tt.p)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error starting %q", err, tt.want)
			}
		})
	}
}

// TestAliasesRefusedEverywhere: policies, presets and the preset sniffing of
// `policy validate` refuse anchors and aliases with one problem, even for a
// billion-laughs document (9 levels of 9 aliases: 387 million nodes if
// followed), before anything follows an alias.
func TestAliasesRefusedEverywhere(t *testing.T) {
	var laughs strings.Builder
	laughs.WriteString("version: 1\nnetwork_middlewares:\n  m:\n    config:\n      l0: &l0 [lol]\n")
	for i := 1; i <= 9; i++ {
		fmt.Fprintf(&laughs, "      l%d: &l%d [%s]\n", i, i, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*l%d, ", i-1), 9), ", "))
	}
	fixture, err := os.ReadFile(filepath.Join("testdata", "invalid", "aliases-80.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{"billion laughs": laughs.String(), "aliases-80": string(fixture)} {
		_, _, err := Check("f.yaml", []byte(data))
		if ps := strictyaml.AsProblems(err); len(ps) != 1 || !strings.Contains(ps[0].Message, "YAML anchors and aliases are not supported") {
			t.Errorf("%s: want one anchor problem, got %d: %.300v", name, len(ps), err)
		}
	}
	preset := "preset: &p {name: x, description: y}\nnetwork_policies:\n  a: {endpoints: [{host: a.example.com, port: 443}]}\n"
	if _, _, err := ParsePreset("p.yaml", []byte(preset)); err == nil || !strings.Contains(err.Error(), "p.yaml:1:9: YAML anchors and aliases are not supported (anchor &p)") {
		t.Errorf("preset with an anchor: %v", err)
	}
	if IsPreset([]byte(preset)) || !IsPreset([]byte("preset: {name: x}\n")) || IsPreset([]byte(laughs.String())) {
		t.Error("IsPreset reads anchors or misses a plain preset")
	}
}

// TestTiers: NemoClaw's policies/tiers.yaml decodes strictly; its problems
// are located; `policy validate` tells it from a policy and a preset.
func TestTiers(t *testing.T) {
	good := "tiers:\n  - name: a\n    presets: [{name: npm, access: read}]\n  - name: b\n    presets: []\n"
	tiers, _, err := ParseTiers("t.yaml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if a, ok := tiers.Find("a"); !ok || a.Presets[0].String() != "npm (read)" {
		t.Errorf("tier a decoded as %+v", a)
	}
	if !IsTiers([]byte(good)) || IsTiers([]byte("version: 1\n")) || IsTiers([]byte("preset: {name: x}\n")) {
		t.Error("IsTiers misclassifies")
	}
	tests := []struct{ doc, want string }{
		{"tiers: [{name: a, presets: [], colour: red}]\n", `t.yaml:1:32: tiers[0].colour: unknown field "colour"`},
		{"tiers: [{name: a}]\n", "t.yaml:1:9: tiers[0]: missing property 'presets'"},
		{"tiers: [{name: a, presets: [{name: x, access: full}]}]\n", "t.yaml:1:47: tiers[0].presets[0].access: value must be one of 'read', 'read-write'"},
		{"tiers: [{name: a, presets: []}, {name: a, presets: []}]\n", `t.yaml:1:40: tiers[1].name: tier "a" is defined twice`},
		{"tiers: [{name: a, presets: [{name: x}, {name: x}]}]\n", `t.yaml:1:47: tiers[0].presets[1].name: preset "x" is listed twice in tier "a"`},
		{"tiers: [&t {name: a, presets: []}, *t]\n", "t.yaml:1:9: YAML anchors and aliases are not supported"},
	}
	for _, tt := range tests {
		_, _, err := ParseTiers("t.yaml", []byte(tt.doc))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: got %v, want %q", tt.doc, err, tt.want)
		}
	}
}

// TestUpstream2026Fields: every field upstream's 2026 schemas define loads;
// those nemoclaw does not act on are findings that name the field.
func TestUpstream2026Fields(t *testing.T) {
	file := filepath.Join("testdata", "valid", "upstream-2026-fields.yaml")
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	p, warns, err := Check(file, data)
	if err != nil {
		t.Fatalf("upstream fields rejected: %v", err)
	}
	if err := Validate(p); err != nil {
		t.Fatalf("Validate refuses what Check accepted: %v", err)
	}
	got := warns.Error()
	for _, want := range []string{
		"chat.endpoints[0].websocket_credential_rewrite: websocket_credential_rewrite is kept but not enforced",
		"chat.endpoints[0].rules[1].allow.method: a WEBSOCKET_TEXT rule is kept but not enforced",
		"chat.endpoints[1].request_body_credential_rewrite: request_body_credential_rewrite is kept but not enforced",
		"chat.endpoints[2].credential_binding: credential_binding is kept but not enforced",
		"chat.endpoints[3].protocol: JSON-RPC/MCP body inspection settings are kept but not enforced",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("findings lack %q:\n%s", want, got)
		}
	}
	if ep := p.NetworkPolicies["chat"].Endpoints; ep[2].CredentialBinding.Provider != "work-gcp" || ep[3].MCP.Versions[0] != "2025-11-25" || !ep[4].AllowEncodedSlash {
		t.Errorf("upstream fields not kept: %+v", ep)
	}
}
