package egress

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nemoclaw/nemoclaw/runner/internal/strictyaml"
	"github.com/nemoclaw/nemoclaw/runner/policy"
)

// fixedSecrets binds every credential to the same secret, so that only the
// policy decides whether compile succeeds.
type fixedSecrets struct{}

func (fixedSecrets) secret(*policy.Credential) (string, error) { return "s3cret", nil }
func (fixedSecrets) placeholder(name string) string            { return "ph-" + name }

// agree checks one policy document: `policy validate` (policy.Check)
// accepts it exactly when the proxy compiles it (issue 13 item 22: they
// disagreed, and `sandbox run` refused what `policy validate` accepted). A
// document that does not decode never reaches the proxy.
func agree(t *testing.T, file string, data []byte) {
	t.Helper()
	_, _, checkErr := policy.Check(file, data)
	var p policy.Policy
	if _, err := strictyaml.Decode(file, data, &p); err != nil {
		if checkErr == nil {
			t.Errorf("%s: Check accepted what does not decode: %v", file, err)
		}
		return
	}
	_, compileErr := compile(&p, fixedSecrets{})
	if (checkErr == nil) != (compileErr == nil) {
		t.Errorf("%s: policy validate and the proxy disagree\n  Check:   %v\n  compile: %v\n%s", file, checkErr, compileErr, data)
	}
	if compileErr != nil && strings.Contains(compileErr.Error(), "internal error") {
		t.Errorf("%s: the proxy refused what validation accepted: %v\n%s", file, compileErr, data)
	}
}

// TestValidateAgreesWithCompileFixtures runs agree over every policy
// fixture, valid and invalid, and every preset (as a policy of its network
// policies).
func TestValidateAgreesWithCompileFixtures(t *testing.T) {
	t.Parallel()
	files, _ := filepath.Glob(filepath.Join("..", "policy", "testdata", "*", "*.yaml"))
	if len(files) < 40 {
		t.Fatalf("found %d policy fixtures; the testdata moved?", len(files))
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		agree(t, f, data)
	}
	presets, _ := filepath.Glob(filepath.Join("..", "policy", "testdata", "valid", "presets", "*.yaml"))
	for _, f := range presets {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		pr, _, err := policy.ParsePreset(f, data)
		if err != nil {
			t.Fatalf("preset %s: %v", f, err)
		}
		if _, err := compile(&policy.Policy{Version: 1, NetworkPolicies: pr.NetworkPolicies}, fixedSecrets{}); err != nil {
			t.Errorf("preset %s validates but does not compile: %v", f, err)
		}
	}
}

// TestValidateAgreesWithCompileCombinations runs agree over every
// combination of an endpoint's protocol, access, enforcement, tls and rules
// (valid values, one invalid value each), and over what else needs the
// proxy to read requests (path, credentials, deny rules) on every kind of
// connection, and over hosts and addresses the proxy never reaches.
func TestValidateAgreesWithCompileCombinations(t *testing.T) {
	t.Parallel()
	protocols := []string{"", "rest", "websocket", "tcp", "graphql", "sql", "json-rpc", "mcp", "ftp"}
	accesses := []string{"", "read-only", "read-write", "full", "most"}
	enforcements := []string{"", "enforce", "audit", "block"}
	tlss := []string{"", "terminate", "passthrough", "skip", "open"}
	rules := []string{
		"",
		`rules: [{allow: {method: GET, path: "/v1/**"}}]`,
		`rules: [{allow: {method: "*", path: "/**", query: {q: "a*"}}}]`,
		`rules: [{allow: {path: "/v1/**"}}]`,
		`rules: [{allow: {method: GET, path: "**"}}]`,
		`rules: [{allow: {method: GET, path: "/v1/[x"}}]`,
		`rules: [{allow: {method: POST, path: /graphql, operation_name: q}}]`,
		`rules: [{allow: {method: GET, path: /s, query: {q: {}}}}]`,
		`rules: [{allow: {method: GET, path: /s, query: {q: "[x"}}}]`,
	}
	n := 0
	for _, proto := range protocols {
		for _, acc := range accesses {
			for _, enf := range enforcements {
				for _, tls := range tlss {
					for _, r := range rules {
						doc := endpointDoc("api.example.com", map[string]string{"protocol": proto, "access": acc, "enforcement": enf, "tls": tls}, r)
						agree(t, fmt.Sprintf("combination-%d.yaml", n), []byte(doc))
						n++
					}
				}
			}
		}
	}
	extras := []string{
		"path: /v1/**",
		`path: "/v1/[x"`,
		"path: v1",
		"credentials: [{name: API_KEY, env: API_KEY}]",
		"credentials: [{name: API_KEY, env: API_KEY, in: [query]}]",
		"credentials: [{name: API_KEY, env: API_KEY, file: /k}]",
		"credentials: [{name: 1KEY, env: API_KEY}]",
		"credentials: [{name: API_KEY, env: API_KEY, in: [body]}]",
		`deny_rules: [{method: DELETE, path: "/**"}]`,
		`deny_rules: [{method: DELETE, path: "/**", command: DROP}]`,
		"allowed_ips: [10.0.0.0/8]",
		"allowed_ips: [169.254.169.254]",
		"allowed_ips: [fd00:ec2::254]",
		"allowed_ips: [64:ff9b::a9fe:a9fe]",
		"allowed_ips: [not-an-ip]",
		"ports: [443, 8443]",
		"ports: [0]",
		"port: 70000",
	}
	for _, proto := range []string{"", "rest", "tcp"} {
		for _, tls := range []string{"", "terminate", "passthrough"} {
			for _, x := range extras {
				agree(t, fmt.Sprintf("combination-%d.yaml", n), []byte(endpointDoc("api.example.com", map[string]string{"protocol": proto, "tls": tls}, x)))
				n++
			}
		}
	}
	hosts := []string{
		"api.example.com", "API.Example.COM.", "*.example.com", "**.example.com", "*.com", "*", "a.*.com", "exa mple.com",
		"https://a.com", "localhost", "127.0.0.1", "[::1]", "10.1.2.3", "169.254.169.254", "[fe80::1]", "0.0.0.0",
		"224.0.0.1", "100.100.100.200", "[fd00:ec2::254]", "[::ffff:169.254.169.254]", "169.254.169.254.",
		"metadata.google.internal", "Metadata.Google.Internal.", "instance-data", "2130706433", "0x7f.1", "127.1",
		"0177.0.0.1", "1.2.3.4.5", "",
	}
	for _, h := range hosts {
		agree(t, fmt.Sprintf("host-%q.yaml", h), []byte(endpointDoc(h, nil, "")))
	}
	binaries := []string{"/usr/bin/git", "/usr/bin/*", "/usr/bin/[py", "usr/bin/git", "/usr/../bin/sh"}
	for _, b := range binaries {
		doc := endpointDoc("api.example.com", nil, "") + fmt.Sprintf("    binaries: [{path: %q}]\n", b)
		agree(t, fmt.Sprintf("binary-%q.yaml", b), []byte(doc))
	}
}

// endpointDoc is a policy with one endpoint: host, port 443, the non-empty
// fields, and extra (a line of YAML) if any.
func endpointDoc(host string, fields map[string]string, extra string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "version: 1\nnetwork_policies:\n  g:\n    endpoints:\n      - host: %q\n", host)
	if !strings.HasPrefix(extra, "port") {
		b.WriteString("        port: 443\n")
	}
	for _, k := range []string{"protocol", "access", "enforcement", "tls"} {
		if v := fields[k]; v != "" {
			fmt.Fprintf(&b, "        %s: %q\n", k, v)
		}
	}
	if extra != "" {
		fmt.Fprintf(&b, "        %s\n", extra)
	}
	return b.String()
}

// FuzzValidateAgreesWithCompile: whatever policy validate accepts, the proxy
// compiles, and it never reports an internal error. Seeded with every policy
// fixture, anchors and aliases included.
func FuzzValidateAgreesWithCompile(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("..", "policy", "testdata", "*", "*.yaml"))
	for _, file := range files {
		if data, err := os.ReadFile(file); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte(endpointDoc("db.example.com", map[string]string{"protocol": "tcp", "access": "full"}, "")))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, _, err := policy.Check("fuzz.yaml", data)
		if err != nil {
			return
		}
		if _, err := compile(p, fixedSecrets{}); err != nil {
			t.Fatalf("policy validate accepted what the proxy refuses: %v\n%s", err, data)
		}
	})
}
