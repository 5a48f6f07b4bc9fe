package egress

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"path"
	"slices"
	"sort"
	"strings"

	"github.com/nemoclaw/nemoclaw/runner/policy"
)

// generation is one compiled, validated network policy. It is immutable once
// built; Reload swaps the whole generation atomically.
type generation struct {
	id         uint64
	pol        *policy.Policy
	eps        []*endpoint
	needBinary bool
	creds      []*credBinding
	warnings   []string
}

// endpoint is a compiled policy.Endpoint.
type endpoint struct {
	key   string // network_policies key
	index int    // index in the group's endpoints
	name  string // ruleName, set with key and index (setName)
	class string // dialClass, computed once at compile (read per request)
	ep    *policy.Endpoint
	host  hostPattern
	ports []int
	// pathScope limits the endpoint to requests under a path glob.
	pathScope []string
	binaries  []string
	nets      []netip.Prefix
	// hostIP is set when Host is an IP literal.
	hostIP netip.Addr
	// exact is set when Host is a plain name without wildcards.
	exact bool
	// inspect: requests must be read (TLS terminated) to enforce this endpoint.
	inspect bool
	// l7 reports whether method/path rules apply; false means every request
	// on the connection is allowed.
	l7       bool
	audit    bool
	protocol string
	allow    []*rule
	deny     []*rule
	creds    []*credBinding
}

// ruleName names an endpoint in logs and denial bodies.
func (e *endpoint) ruleName() string { return e.name }

// setName places the endpoint in its group and names it once: the name
// goes into every decision's audit line, so it is not formatted per request.
func (e *endpoint) setName(key string, index int) {
	e.key, e.index = key, index
	e.name = fmt.Sprintf("network_policies.%s.endpoints[%d]", key, index)
}

// rule is a compiled policy.Matcher.
type rule struct {
	method string // upper-case, "*" = any
	path   []string
	query  map[string][]string
	src    string
}

// Access presets expressed as method sets.
var accessMethods = map[string][]string{
	policy.AccessReadOnly:  {"GET", "HEAD", "OPTIONS"},
	policy.AccessReadWrite: {"GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH"},
	policy.AccessFull:      {"*"},
}

// compile validates p with policy.Validate, the one set of rules that
// `policy validate`, `blueprint validate` and `sandbox run` share, and
// builds a generation. Every error names the field that is wrong and what
// would be valid. The checks compileValidated keeps are defensive: one that
// fires on a policy Validate accepted is a bug, reported as an internal
// error; only a credential's secret can be missing at run time.
func compile(p *policy.Policy, secrets secretSource) (*generation, error) {
	if err := policy.Validate(p); err != nil {
		return nil, err
	}
	g, err := compileValidated(p, secrets)
	if se := (secretError{}); err != nil && !errors.As(err, &se) {
		return nil, fmt.Errorf("internal error: the policy passed validation but the proxy cannot compile it (please report this bug): %w", err)
	}
	return g, err
}

// secretError is a credential whose secret could not be read: the policy
// is valid, the host is not ready for it.
type secretError struct{ error }

func (e secretError) Unwrap() error { return e.error }

func compileValidated(p *policy.Policy, secrets secretSource) (*generation, error) {
	g := &generation{pol: p}
	keys := make([]string, 0, len(p.NetworkPolicies))
	for k := range p.NetworkPolicies {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		np := p.NetworkPolicies[k]
		if np == nil {
			return nil, fmt.Errorf("network_policies.%s: empty group; give it endpoints or remove it", k)
		}
		var bins []string
		for i, b := range np.Binaries {
			if b == nil || b.Path == "" {
				return nil, fmt.Errorf("network_policies.%s.binaries[%d]: path is required", k, i)
			}
			if _, err := path.Match(b.Path, "/"); err != nil {
				return nil, fmt.Errorf("network_policies.%s.binaries[%d]: bad glob %q: %w", k, i, b.Path, err)
			}
			bins = append(bins, b.Path)
		}
		if len(bins) > 0 {
			g.needBinary = true
		}
		for i, ep := range np.Endpoints {
			where := fmt.Sprintf("network_policies.%s.endpoints[%d]", k, i)
			if ep == nil {
				return nil, fmt.Errorf("%s: empty endpoint", where)
			}
			ce, warn, err := compileEndpoint(where, ep, secrets)
			if err != nil {
				return nil, err
			}
			ce.setName(k, i)
			ce.binaries = bins
			g.eps = append(g.eps, ce)
			g.creds = append(g.creds, ce.creds...)
			g.warnings = append(g.warnings, warn...)
		}
	}
	return g, nil
}

func compileEndpoint(where string, ep *policy.Endpoint, secrets secretSource) (*endpoint, []string, error) {
	var warns []string
	ce := &endpoint{ep: ep}
	host := strings.ToLower(strings.TrimSuffix(strings.Trim(ep.Host, "[]"), "."))
	switch {
	case host == "" && len(ep.AllowedIPs) == 0:
		return nil, nil, fmt.Errorf("%s.host: required (a name, IP, or glob like *.example.com) unless allowed_ips is set", where)
	case host != "":
		if a, err := netip.ParseAddr(host); err == nil {
			ce.hostIP = a.Unmap()
		} else if _, ok := parseLooseIPv4(host); ok {
			return nil, nil, fmt.Errorf("%s.host: %q is a non-canonical IPv4 form; write it as a dotted quad", where, ep.Host)
		}
		hp, err := compileHost(host)
		if err != nil {
			return nil, nil, fmt.Errorf("%s.host: %w", where, err)
		}
		ce.host = hp
		ce.exact = !strings.Contains(host, "*") && !ce.hostIP.IsValid()
		if isMetadataName(host) {
			return nil, nil, fmt.Errorf("%s.host: %q is a cloud metadata name, which is never reachable from a sandbox", where, ep.Host)
		}
	}
	ce.ports = ep.EffectivePorts()
	if len(ce.ports) == 0 {
		ce.ports = []int{443}
	}
	for _, pt := range ce.ports {
		if pt < 1 || pt > 65535 {
			return nil, nil, fmt.Errorf("%s.port: %d is not a TCP port (1-65535)", where, pt)
		}
	}
	for j, s := range ep.AllowedIPs {
		pfx, err := parsePrefix(s)
		if err != nil {
			return nil, nil, fmt.Errorf("%s.allowed_ips[%d]: %q is not an IP or CIDR", where, j, s)
		}
		if c := classify(pfx.Addr()); c == classNever {
			return nil, nil, fmt.Errorf("%s.allowed_ips[%d]: %s is link-local, unspecified or a metadata address, which is never reachable", where, j, s)
		} else if c != classPublic {
			warns = append(warns, fmt.Sprintf("%s.allowed_ips[%d]: %s opens a %s range to the sandbox", where, j, s, c))
		}
		ce.nets = append(ce.nets, pfx)
	}
	if ce.hostIP.IsValid() {
		switch classify(ce.hostIP) {
		case classNever:
			return nil, nil, fmt.Errorf("%s.host: %s is link-local, unspecified or a metadata address, which is never reachable", where, ep.Host)
		case classLoopback, classPrivate:
			warns = append(warns, fmt.Sprintf("%s.host: %s opens a %s address to the sandbox", where, ep.Host, classify(ce.hostIP)))
		}
	}
	switch ep.Protocol {
	case "", policy.ProtoREST, policy.ProtoWebSocket, policy.ProtoTCP:
	case policy.ProtoGraphQL, policy.ProtoJSONRPC, policy.ProtoMCP:
		warns = append(warns, fmt.Sprintf("%s.protocol: %s bodies are not inspected; its method/path rules are enforced as rest", where, ep.Protocol))
	case policy.ProtoSQL:
		return nil, nil, fmt.Errorf("%s.protocol: sql is not supported by the nemoclaw proxy; use tcp for a plain tunnel", where)
	default:
		return nil, nil, fmt.Errorf("%s.protocol: %q is not one of rest, websocket, tcp", where, ep.Protocol)
	}
	ce.protocol = ep.Protocol
	switch ep.Enforcement {
	case "", policy.Enforce, policy.Audit:
	default:
		return nil, nil, fmt.Errorf("%s.enforcement: %q is not enforce or audit", where, ep.Enforcement)
	}
	ce.audit = ep.EffectiveEnforcement() == policy.Audit
	switch ep.TLS {
	case "", "terminate", "passthrough", "skip":
	default:
		return nil, nil, fmt.Errorf("%s.tls: %q is not terminate, passthrough or skip", where, ep.TLS)
	}
	if ep.Access != "" && len(ep.Rules) > 0 {
		return nil, nil, fmt.Errorf("%s: access and rules are exclusive; keep one", where)
	}
	if ep.Access != "" && !ep.TunnelFullAccess() {
		ms, ok := accessMethods[ep.Access]
		if !ok {
			return nil, nil, fmt.Errorf("%s.access: %q is not read-only, read-write or full", where, ep.Access)
		}
		for _, m := range ms {
			ce.allow = append(ce.allow, &rule{method: m, src: "access: " + ep.Access})
		}
	}
	for j, r := range ep.Rules {
		if r == nil || r.Allow == nil {
			return nil, nil, fmt.Errorf("%s.rules[%d]: allow is required", where, j)
		}
		cr, err := compileRule(r.Allow)
		if err != nil {
			return nil, nil, fmt.Errorf("%s.rules[%d].allow: %w", where, j, err)
		}
		cr.src = fmt.Sprintf("%s.rules[%d]", where, j)
		ce.allow = append(ce.allow, cr)
	}
	for j, m := range ep.DenyRules {
		if m == nil {
			return nil, nil, fmt.Errorf("%s.deny_rules[%d]: empty rule", where, j)
		}
		cr, err := compileRule(m)
		if err != nil {
			return nil, nil, fmt.Errorf("%s.deny_rules[%d]: %w", where, j, err)
		}
		cr.src = fmt.Sprintf("%s.deny_rules[%d]", where, j)
		ce.deny = append(ce.deny, cr)
	}
	if ep.Path != "" {
		ps, err := compilePathGlob(ep.Path)
		if err != nil {
			return nil, nil, fmt.Errorf("%s.path: %w", where, err)
		}
		ce.pathScope = ps
	}
	for j, c := range ep.Credentials {
		cb, err := compileCredential(c, secrets)
		if err != nil {
			return nil, nil, secretError{fmt.Errorf("%s.credentials[%d]: %w", where, j, err)}
		}
		ce.creds = append(ce.creds, cb)
	}
	tunnel := ep.Protocol == policy.ProtoTCP || ep.TLS == "passthrough" || ep.TLS == "skip"
	ce.l7 = len(ce.allow) > 0 || len(ce.deny) > 0
	ce.inspect = !tunnel && (ce.l7 || ep.TLS == "terminate" || ep.Protocol != "" || len(ce.creds) > 0 || ce.pathScope != nil)
	if tunnel && (ce.l7 || len(ce.creds) > 0 || ce.pathScope != nil) {
		return nil, nil, fmt.Errorf("%s: rules, access, path and credentials need the proxy to read requests, which protocol: tcp and tls: passthrough/skip forbid; drop one", where)
	}
	ce.class = dialClass(ce)
	return ce, warns, nil
}

func compileRule(m *policy.Matcher) (*rule, error) {
	r := &rule{method: strings.ToUpper(m.Method)}
	if r.method == "" {
		r.method = "*"
	}
	if m.Path != "" {
		ps, err := compilePathGlob(m.Path)
		if err != nil {
			return nil, fmt.Errorf("path: %w", err)
		}
		r.path = ps
	}
	if len(m.Query) > 0 {
		r.query = map[string][]string{}
		for k, q := range m.Query {
			pats := q.Patterns()
			if len(pats) == 0 {
				return nil, fmt.Errorf("query.%s: needs a glob", k)
			}
			for _, p := range pats {
				if _, err := path.Match(p, ""); err != nil {
					return nil, fmt.Errorf("query.%s: bad glob %q", k, p)
				}
			}
			r.query[k] = pats
		}
	}
	if m.Command != "" || m.OperationType != "" || m.OperationName != "" || len(m.Fields) > 0 || m.Tool != nil || len(m.Params) > 0 {
		return nil, fmt.Errorf("command/operation/fields/tool/params selectors belong to sql, graphql and mcp inspection, which nemoclaw does not do; use method and path")
	}
	return r, nil
}

// compilePathGlob splits a path glob into segment patterns: "*" matches
// within one segment, "**" any number of segments.
func compilePathGlob(p string) ([]string, error) {
	if !strings.HasPrefix(p, "/") {
		return nil, fmt.Errorf("glob %q must start with /", p)
	}
	var segs []string
	for _, s := range strings.Split(p[1:], "/") {
		if s == "" {
			continue
		}
		if _, err := path.Match(s, ""); err != nil {
			return nil, fmt.Errorf("bad glob %q", p)
		}
		segs = append(segs, s)
	}
	if segs == nil {
		segs = []string{}
	}
	return segs, nil
}

// matchSegments matches canonical segments against a compiled path glob.
func matchSegments(pat, segs []string) bool {
	for len(pat) > 0 {
		if pat[0] == "**" {
			rest := pat[1:]
			if len(rest) == 0 {
				return true
			}
			for i := 0; i <= len(segs); i++ {
				if matchSegments(rest, segs[i:]) {
					return true
				}
			}
			return false
		}
		if len(segs) == 0 {
			return false
		}
		if pat[0] != segs[0] {
			if ok, _ := path.Match(pat[0], segs[0]); !ok {
				return false
			}
		}
		pat, segs = pat[1:], segs[1:]
	}
	return len(segs) == 0
}

// matches reports whether an allow rule covers the request: with a
// repeated query key, every value must match.
func (r *rule) matches(method string, p CanonPath, q url.Values) bool {
	if !r.matchesMethodPath(method, p.Segments) {
		return false
	}
	for k, pats := range r.query {
		vals, ok := q[k]
		if !ok {
			return false
		}
		for _, v := range vals {
			if !slices.ContainsFunc(pats, func(p string) bool { return matchValue(p, v) }) {
				return false
			}
		}
	}
	return true
}

// matchesDeny reports whether a deny rule hits the request: with a
// repeated query key, one matching value is enough. With an encoded slash
// (allow_encoded_slash) the path is also tried as an upstream that decodes
// %2F would read it.
func (r *rule) matchesDeny(method string, p CanonPath, q url.Values) bool {
	if !r.matchesMethodPath(method, p.Segments) && (p.SlashSegments == nil || !r.matchesMethodPath(method, p.SlashSegments)) {
		return false
	}
	for k, pats := range r.query {
		if !slices.ContainsFunc(q[k], func(v string) bool {
			return slices.ContainsFunc(pats, func(p string) bool { return matchValue(p, v) })
		}) {
			return false
		}
	}
	return true
}

func (r *rule) matchesMethodPath(method string, segs []string) bool {
	return (r.method == "*" || r.method == method) && (r.path == nil || matchSegments(r.path, segs))
}

// matchValue matches a query value against a glob in which '*' matches any
// run of bytes, '/' included (path.Match's '*' stops at '/'). The value's
// '/' become NUL for path.Match, which has no separator then; a pattern
// names '/' the same way.
func matchValue(pat, v string) bool {
	ok, _ := path.Match(strings.ReplaceAll(pat, "/", "\x00"), strings.ReplaceAll(v, "/", "\x00"))
	return ok
}

// hostPattern matches host names label by label; a "**" label matches one
// or more labels, "*" inside a label matches within that label.
type hostPattern struct {
	exact  string
	labels []string
}

func compileHost(h string) (hostPattern, error) {
	if !strings.Contains(h, "*") {
		return hostPattern{exact: h}, nil
	}
	labels := strings.Split(h, ".")
	for i, l := range labels {
		if l == "" {
			return hostPattern{}, fmt.Errorf("empty label in %q", h)
		}
		if l == "**" && i == len(labels)-1 {
			return hostPattern{}, fmt.Errorf("%q: ** must be followed by a domain, as in **.example.com", h)
		}
		if _, err := path.Match(l, ""); err != nil {
			return hostPattern{}, fmt.Errorf("bad glob %q", h)
		}
	}
	if len(labels) < 2 {
		return hostPattern{}, fmt.Errorf("%q matches every host; name a domain, as in *.example.com", h)
	}
	return hostPattern{labels: labels}, nil
}

func (h hostPattern) match(host string) bool {
	if h.labels == nil {
		return h.exact != "" && h.exact == host
	}
	return matchLabels(h.labels, strings.Split(host, "."))
}

func matchLabels(pat, labels []string) bool {
	for len(pat) > 0 {
		if pat[0] == "**" {
			for i := 1; i <= len(labels); i++ {
				if matchLabels(pat[1:], labels[i:]) {
					return true
				}
			}
			return false
		}
		if len(labels) == 0 {
			return false
		}
		if ok, _ := path.Match(pat[0], labels[0]); !ok || labels[0] == "" {
			return false
		}
		pat, labels = pat[1:], labels[1:]
	}
	return len(labels) == 0
}

// matchHost reports whether the endpoint covers host (a lower-case name or
// canonical IP string) and port.
func (e *endpoint) matchHostPort(host string, ip netip.Addr, port int) bool {
	if !slices.Contains(e.ports, port) {
		return false
	}
	if e.host.exact != "" || e.host.labels != nil {
		if e.hostIP.IsValid() {
			return ip.IsValid() && ip == e.hostIP
		}
		return !ip.IsValid() && e.host.match(host)
	}
	// host-less endpoint: IP literals inside allowed_ips.
	return ip.IsValid() && slices.ContainsFunc(e.nets, func(p netip.Prefix) bool { return p.Contains(ip) })
}

func (e *endpoint) matchBinary(b *peerInfo) bool {
	if len(e.binaries) == 0 {
		return true
	}
	if b == nil {
		return false
	}
	for _, exe := range b.chain {
		for _, pat := range e.binaries {
			if ok, _ := path.Match(pat, exe); ok {
				return true
			}
		}
	}
	return false
}
