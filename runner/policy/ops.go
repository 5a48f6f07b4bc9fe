package policy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Finding is a located remark about a policy that is not an error, e.g. a
// field that is kept but not enforced.
type Finding struct {
	// Path is the field path inside the policy.
	Path []string
	// Message says what is (not) done with it.
	Message string
}

// Unenforced lists the fields p sets that nemoclaw accepts but does not act
// on yet, so the user is never misled into thinking they protect anything.
func Unenforced(p *Policy) []Finding {
	var out []Finding
	if len(p.NetworkMiddlewares) > 0 {
		out = append(out, Finding{[]string{"network_middlewares"}, "network_middlewares is kept but not run: nemoclaw has no middleware engine yet"})
	}
	for _, key := range sortedKeys(p.NetworkPolicies) {
		np := p.NetworkPolicies[key]
		if np == nil {
			continue
		}
		for i, e := range np.Endpoints {
			if e == nil {
				continue
			}
			ep := []string{"network_policies", key, "endpoints", strconv.Itoa(i)}
			note := func(field, what string) {
				out = append(out, Finding{append(append([]string{}, ep...), field), what})
			}
			switch e.Protocol {
			case ProtoGraphQL, ProtoJSONRPC, ProtoMCP:
				note("protocol", fmt.Sprintf("protocol %s is inspected as plain HTTP (rest): method, path and query rules apply; %s bodies are not inspected", e.Protocol, e.Protocol))
			}
			for j, r := range e.Rules {
				if r != nil && r.Allow != nil && strings.EqualFold(r.Allow.Method, MethodWebSocketText) {
					out = append(out, Finding{append(append([]string{}, ep...), "rules", strconv.Itoa(j), "allow", "method"),
						"a WEBSOCKET_TEXT rule is kept but not enforced: the proxy checks the upgrade request and relays the frames unread, so every frame passes on an allowed upgrade"})
				}
			}
			if e.WebsocketCredentialRewrite {
				note("websocket_credential_rewrite", "websocket_credential_rewrite is kept but not enforced: placeholders are replaced in headers and paths only")
			}
			if e.RequestBodyCredentialRewrite {
				note("request_body_credential_rewrite", "request_body_credential_rewrite is kept but not enforced: placeholders are replaced in headers and paths only")
			}
			if e.CredentialBinding != nil {
				note("credential_binding", "credential_binding is kept but not enforced: nemoclaw has no OpenShell providers; bind a secret with the endpoint's credentials")
			}
			if e.CredentialSigning != "" {
				note("credential_signing", "credential_signing is kept but not enforced: the proxy does not re-sign requests")
			}
			if e.PersistedQueries != "" || len(e.GraphQLPersistedQueries) > 0 || e.GraphQLMaxBodyBytes > 0 {
				note("persisted_queries", "GraphQL persisted-query settings are kept but not enforced")
			}
			if e.MCP != nil || e.JSONRPC != nil || e.JSONRPCMaxBodyBytes > 0 {
				note("protocol", "JSON-RPC/MCP body inspection settings are kept but not enforced")
			}
		}
	}
	return out
}

func hasUpstreamSelectors(m *Matcher) bool {
	return m.Command != "" || m.OperationType != "" || m.OperationName != "" || len(m.Fields) > 0 || m.Tool != nil || len(m.Params) > 0
}

// Clone returns a deep copy of p.
func Clone(p *Policy) *Policy {
	if p == nil {
		return nil
	}
	data, err := json.Marshal(p)
	if err != nil {
		panic(fmt.Sprintf("policy clone: %v", err)) // only plain data types: cannot fail
	}
	var c Policy
	if err := json.Unmarshal(data, &c); err != nil {
		panic(fmt.Sprintf("policy clone: %v", err))
	}
	return &c
}

// Collision reports a network policy key that a preset or addition replaced.
type Collision struct {
	// Key is the network_policies key.
	Key string
	// By names the preset or source that won.
	By string
}

// String says what was replaced.
func (c Collision) String() string {
	return fmt.Sprintf("network policy %q was replaced by %s", c.Key, c.By)
}

// Merge returns a copy of base with each preset's network policies added in
// order. On a key collision the preset wins and the collision is returned.
func Merge(base *Policy, presets ...*Preset) (*Policy, []Collision) {
	out := Clone(base)
	if out == nil {
		out = &Policy{Version: 1}
	}
	var cs []Collision
	for _, pr := range presets {
		if out.NetworkPolicies == nil {
			out.NetworkPolicies = map[string]*NetworkPolicy{}
		}
		keys := sortedKeys(pr.NetworkPolicies)
		for _, k := range keys {
			if _, dup := out.NetworkPolicies[k]; dup {
				cs = append(cs, Collision{Key: k, By: "preset " + strconv.Quote(pr.Meta.Name)})
			}
			out.NetworkPolicies[k] = cloneNP(pr.NetworkPolicies[k])
		}
	}
	return out, cs
}

func cloneNP(np *NetworkPolicy) *NetworkPolicy {
	c := Clone(&Policy{NetworkPolicies: map[string]*NetworkPolicy{"x": np}})
	return c.NetworkPolicies["x"]
}

// Normalize returns a copy of p with every default made explicit: names from
// keys, ports lists, enforcement, landlock compatibility. Its YAML form is
// the canonical printed form of a policy.
func Normalize(p *Policy) *Policy {
	c := Clone(p)
	if c.Version == 0 {
		c.Version = 1
	}
	if c.Landlock == nil {
		c.Landlock = &LandlockPolicy{}
	}
	switch c.Landlock.Compatibility {
	case "", BestEffort:
		c.Landlock.Compatibility = BestEffort
	default:
		c.Landlock.Compatibility = HardRequirement
	}
	if c.Filesystem != nil {
		c.Filesystem.ReadOnly = sortedUnique(c.Filesystem.ReadOnly)
		c.Filesystem.ReadWrite = sortedUnique(c.Filesystem.ReadWrite)
	}
	for k, np := range c.NetworkPolicies {
		if np == nil {
			continue
		}
		if np.Name == "" {
			np.Name = k
		}
		for _, e := range np.Endpoints {
			if e == nil {
				continue
			}
			e.Ports = e.EffectivePorts()
			e.Port = 0
			e.Enforcement = e.EffectiveEnforcement()
			if e.Protocol == "" {
				e.Protocol = ProtoREST
			}
		}
	}
	return c
}

func sortedUnique(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}

// Canonical renders p in its canonical YAML form (Normalize, sorted keys).
func Canonical(p *Policy) ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(Normalize(p)); err != nil {
		return nil, fmt.Errorf("encode policy: %w", err)
	}
	return buf.Bytes(), nil
}

// StaticFields names the policy sections locked at sandbox creation.
var StaticFields = []string{"filesystem_policy", "landlock", "process", "resources"}

// DiffStatic lists the static sections that differ between running and
// next; a live update must change none of them.
func DiffStatic(running, next *Policy) []string {
	a, b := Normalize(running), Normalize(next)
	var out []string
	if !reflect.DeepEqual(a.Filesystem, b.Filesystem) {
		out = append(out, "filesystem_policy")
	}
	if !reflect.DeepEqual(a.Landlock, b.Landlock) {
		out = append(out, "landlock")
	}
	if !reflect.DeepEqual(a.Process, b.Process) {
		out = append(out, "process")
	}
	if !reflect.DeepEqual(a.Resources, b.Resources) {
		out = append(out, "resources")
	}
	return out
}
