package policy

import (
	"fmt"
	"net/netip"
	"net/textproto"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/nemoclaw/nemoclaw/runner/internal/strictyaml"
)

// validator collects located errors and warnings for one document.
type validator struct {
	doc   *strictyaml.Doc
	errs  Problems
	warns Problems
}

func at(base []string, more ...string) []string {
	out := make([]string, 0, len(base)+len(more))
	return append(append(out, base...), more...)
}

func (v *validator) errf(p []string, format string, a ...any) {
	v.errs = append(v.errs, v.doc.Problem(p, format, a...))
}

func (v *validator) warnf(p []string, format string, a ...any) {
	v.warns = append(v.warns, v.doc.Problem(p, format, a...))
}

// policy checks a whole policy; base is the path of the policy inside its
// document (nil for a standalone policy file).
func (v *validator) policy(p *Policy, base []string) {
	if fs := p.Filesystem; fs != nil {
		v.paths(fs.ReadOnly, at(base, "filesystem_policy", "read_only"), false)
		v.paths(fs.ReadWrite, at(base, "filesystem_policy", "read_write"), true)
	}
	if r := p.Resources; r != nil && r.Memory != "" {
		if n, err := ParseBytes(r.Memory); err != nil {
			v.errf(at(base, "resources", "memory"), "%v", err)
		} else if n == 0 {
			v.errf(at(base, "resources", "memory"), "memory %q is zero; give a limit such as 512Mi, or leave memory out for none", r.Memory)
		}
	}
	if r := p.Resources; r != nil && r.CPU != "" {
		if _, err := ParseCPU(r.CPU); err != nil {
			v.errf(at(base, "resources", "cpu"), "%v", err)
		}
	}
	v.networkPolicies(p.NetworkPolicies, at(base, "network_policies"))
	for _, u := range Unenforced(p) {
		v.warnf(at(base, u.Path...), "%s", u.Message)
	}
}

// paths checks filesystem paths: absolute, clean, no "..", "/" never writable.
func (v *validator) paths(list []string, p []string, writable bool) {
	seen := map[string]bool{}
	for i, s := range list {
		ip := at(p, strconv.Itoa(i))
		switch {
		case !strings.HasPrefix(s, "/"):
			v.errf(ip, "path %q is not absolute; write it from the root, e.g. /%s", s, strings.TrimPrefix(s, "./"))
			continue
		case hasDotDot(s):
			v.errf(ip, "path %q contains '..'; name the directory directly", s)
			continue
		}
		c := path.Clean(s)
		if writable && c == "/" {
			v.errf(ip, "'/' can never be read-write: it would let the agent rewrite the host; list the directories it needs")
			continue
		}
		if seen[c] {
			v.warnf(ip, "path %q is listed twice", s)
		}
		seen[c] = true
	}
}

func hasDotDot(s string) bool {
	for _, seg := range strings.Split(s, "/") {
		if seg == ".." {
			return true
		}
	}
	return false
}

// networkPolicies checks every group, endpoint and rule.
func (v *validator) networkPolicies(m map[string]*NetworkPolicy, base []string) {
	for _, key := range sortedKeys(m) {
		np := m[key]
		kp := at(base, key)
		if np == nil {
			v.errf(kp, "network policy %q is empty; give it endpoints", key)
			continue
		}
		if len(np.Endpoints) == 0 {
			v.errf(kp, "network policy %q has no endpoints; add at least one {host, port}", key)
		}
		for i, b := range np.Binaries {
			bp := at(kp, "binaries", strconv.Itoa(i), "path")
			if b == nil || !strings.HasPrefix(b.Path, "/") {
				v.errf(bp, "binary path must be absolute, e.g. /usr/bin/git")
			} else if hasDotDot(b.Path) {
				v.errf(bp, "binary path %q contains '..'", b.Path)
			} else if _, err := path.Match(b.Path, "/"); err != nil {
				v.errf(bp, "binary path %q is a bad glob (%v); escape [, ] and \\ with \\", b.Path, err)
			}
		}
		for i, e := range np.Endpoints {
			v.endpoint(e, at(kp, "endpoints", strconv.Itoa(i)))
		}
	}
}

// endpoint checks one endpoint.
func (v *validator) endpoint(e *Endpoint, ep []string) {
	if e == nil {
		v.errf(ep, "empty endpoint; give it a host and a port")
		return
	}
	if e.Host == "" && len(e.AllowedIPs) == 0 {
		v.errf(ep, "endpoint has no host; set host (or allowed_ips for an IP-range endpoint)")
	}
	if e.Host != "" {
		if err := CheckHostPattern(e.Host); err != nil {
			v.errf(at(ep, "host"), "%v", err)
		} else if err := checkHostReachable(e.Host); err != nil {
			v.errf(at(ep, "host"), "%v", err)
		}
	}
	if len(e.EffectivePorts()) == 0 {
		v.errf(ep, "endpoint %q has no port; set port (1-65535) or ports", e.Host)
	}
	for i, p := range e.Ports {
		if p < 1 || p > 65535 {
			v.errf(at(ep, "ports", strconv.Itoa(i)), "port %d is out of range 1-65535", p)
		}
	}
	if e.Port != 0 && (e.Port < 1 || e.Port > 65535) {
		v.errf(at(ep, "port"), "port %d is out of range 1-65535", e.Port)
	}
	if e.Port != 0 && len(e.Ports) > 0 {
		v.warnf(at(ep, "port"), "both port and ports are set; ports wins and port %d is ignored", e.Port)
	}
	if len(e.Rules) > 0 && e.Access != "" {
		v.errf(at(ep, "access"), "rules and access are exclusive; keep access %q or the explicit rules, not both", e.Access)
	}
	// A tunnel is never read, so nothing that needs the requests can apply.
	// access: full is the exception: it asks for every request, which is
	// what the tunnel carries, so it is the tunnel (TunnelFullAccess).
	if l7 := needsRequests(e); l7 != "" {
		switch {
		case e.Protocol == ProtoTCP:
			v.errf(at(ep, "protocol"), "protocol tcp is a plain tunnel the proxy does not read, so it cannot apply %s (the tunnel already carries everything on the connection); use protocol rest, or drop %s", l7, l7)
		case e.TLS == "passthrough" || e.TLS == "skip":
			v.errf(at(ep, "tls"), "tls %s leaves the traffic encrypted, so %s could not be enforced; use tls: terminate, or drop %s", e.TLS, l7, l7)
		}
	}
	switch e.Protocol {
	case ProtoSQL:
		v.errf(at(ep, "protocol"), "protocol sql is not supported: the nemoclaw proxy does not inspect SQL; use protocol tcp for a plain tunnel")
	}
	if e.Path != "" {
		if err := checkPathGlob(e.Path); err != nil {
			v.errf(at(ep, "path"), "%v", err)
		}
	}
	for i, r := range e.Rules {
		rp := at(ep, "rules", strconv.Itoa(i))
		if r == nil || r.Allow == nil {
			v.errf(rp, "rule has no allow; write {allow: {method: GET, path: \"/**\"}}")
			continue
		}
		v.matcher(r.Allow, at(rp, "allow"), e.Protocol)
	}
	for i, m := range e.DenyRules {
		if m == nil {
			v.errf(at(ep, "deny_rules", strconv.Itoa(i)), "empty deny rule")
			continue
		}
		// The proxy relays frames unread: a frame deny would deny nothing.
		if strings.EqualFold(m.Method, MethodWebSocketText) {
			v.errf(at(ep, "deny_rules", strconv.Itoa(i), "method"), "a WEBSOCKET_TEXT deny rule cannot be enforced: the proxy relays WebSocket frames unread; deny the upgrade (method GET) instead, or drop the rule")
		}
		v.matcher(m, at(ep, "deny_rules", strconv.Itoa(i)), e.Protocol)
	}
	for i, s := range e.AllowedIPs {
		ip := at(ep, "allowed_ips", strconv.Itoa(i))
		pfx, err := ParseIPOrCIDR(s)
		if err != nil {
			v.errf(ip, "%v", err)
			continue
		}
		switch ClassifyAddr(pfx.Addr()) {
		case AddrLoopback, AddrPrivate:
			v.warnf(ip, "allowed_ips %s opens a loopback or private range to the agent; make sure that is intended", s)
		case AddrNever:
			v.errf(ip, "allowed_ips %s is link-local, unspecified, multicast or a metadata address, which is never reachable (cloud metadata lives there)", s)
		}
	}
	if a, err := netip.ParseAddr(NormalizeHost(e.Host)); err == nil && len(e.AllowedIPs) == 0 {
		if c := ClassifyAddr(a); c == AddrLoopback || c == AddrPrivate {
			v.warnf(at(ep, "host"), "host %s is a loopback or private address; it is reachable only because this endpoint names it exactly", e.Host)
		}
	}
	names := map[string]bool{}
	for i, c := range e.Credentials {
		cp := at(ep, "credentials", strconv.Itoa(i))
		if c == nil {
			v.errf(cp, "empty credential")
			continue
		}
		if (c.Env == "") == (c.File == "") {
			v.errf(cp, "credential %q needs exactly one of env or file as the source of the secret", c.Name)
		}
		if names[c.Name] {
			v.errf(at(cp, "name"), "credential %q is bound twice on this endpoint", c.Name)
		}
		if c.Header != "" && IsHopHeader(c.Header) {
			v.errf(at(cp, "header"), "credential %q: %q is not an end-to-end HTTP header name (the proxy consumes hop-by-hop headers; an upstream never receives it): name the header the API reads, e.g. Authorization", c.Name, c.Header)
		}
		if slices.Contains(c.In, "query") && c.Param == "" {
			v.errf(at(cp, "param"), "credential %q has in: query but no param: name the one query parameter whose value is the placeholder", c.Name)
		}
		names[c.Name] = true
	}
}

// IsHopHeader reports whether an HTTP header is hop-by-hop (or Host): one
// the proxy consumes or rewrites, so a credential can never be bound to it.
func IsHopHeader(s string) bool {
	return slices.Contains([]string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
		"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade", "Host"}, textproto.CanonicalMIMEHeaderKey(s))
}

var httpMethods = map[string]bool{
	"*": true, "GET": true, "HEAD": true, "POST": true, "PUT": true, "PATCH": true,
	"DELETE": true, "OPTIONS": true, "CONNECT": true, "TRACE": true, MethodWebSocketText: true,
}

// matcher checks one L7 rule body.
func (v *validator) matcher(m *Matcher, mp []string, protocol string) {
	if protocol == "" || protocol == ProtoREST || protocol == ProtoWebSocket {
		if m.Method == "" {
			v.errf(mp, "rule has no method; use an HTTP method such as GET or \"*\" for any")
		} else if !httpMethods[strings.ToUpper(m.Method)] {
			v.errf(at(mp, "method"), "method %q is not an HTTP method; use GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS or \"*\"", m.Method)
		}
		if m.Path == "" {
			v.errf(mp, "rule has no path; use a glob such as \"/**\" for any path")
		}
	}
	if m.Path != "" {
		if err := checkPathGlob(m.Path); err != nil {
			v.errf(at(mp, "path"), "%v", err)
		}
	}
	for _, k := range sortedKeys(m.Query) {
		pats := m.Query[k].Patterns()
		if len(pats) == 0 {
			v.errf(at(mp, "query", k), "query %q has no pattern; give a glob, {glob: G} or {any: [G, ...]}", k)
		}
		for _, g := range pats {
			if _, err := path.Match(g, ""); err != nil {
				v.errf(at(mp, "query", k), "query %q: %q is a bad glob (%v); escape [, ] and \\ with \\", k, g, err)
			}
		}
	}
	// Matching on method and path alone would make an allow rule allow more
	// than written (and a deny rule deny more), so the selectors are refused.
	if hasUpstreamSelectors(m) {
		v.errf(mp, "command/operation_type/operation_name/fields/tool/params select inside SQL, GraphQL and MCP bodies, which nemoclaw does not inspect; use method, path and query, or drop the rule")
	}
}

// needsRequests names what on e needs the proxy to read its requests
// (rules, deny_rules, access, path, credentials), or "" for nothing.
func needsRequests(e *Endpoint) string {
	var what []string
	if len(e.Rules) > 0 {
		what = append(what, "rules")
	}
	if len(e.DenyRules) > 0 {
		what = append(what, "deny_rules")
	}
	if e.Access != "" && !e.TunnelFullAccess() {
		what = append(what, "access")
	}
	if e.Path != "" {
		what = append(what, "path")
	}
	if len(e.Credentials) > 0 {
		what = append(what, "credentials")
	}
	return strings.Join(what, "/")
}

// checkPathGlob checks a path glob as the proxy compiles it: it starts with
// '/', and every segment is a valid glob ('*' within a segment, '**' any).
func checkPathGlob(p string) error {
	if !strings.HasPrefix(p, "/") {
		return fmt.Errorf("path %q must start with '/'; write \"/**\" for any path", p)
	}
	if strings.Contains(p, "***") {
		return fmt.Errorf("path %q has '***'; use '*' for one segment or '**' for any", p)
	}
	for _, seg := range strings.Split(p[1:], "/") {
		if _, err := path.Match(seg, ""); err != nil {
			return fmt.Errorf("path %q is a bad glob (%v); escape [, ] and \\ with \\", p, err)
		}
	}
	return nil
}

// NormalizeHost is the form of an endpoint's host the proxy matches on:
// lower case, without IPv6 brackets or a trailing dot.
func NormalizeHost(h string) string {
	return strings.ToLower(strings.TrimSuffix(strings.Trim(h, "[]"), "."))
}

// checkHostReachable refuses a host that could never be reached from a
// sandbox, whatever the policy says: a cloud metadata name, a
// never-reachable address, and the inet_aton forms of IPv4 ("2130706433",
// "127.1") that resolvers would read as an address.
func checkHostReachable(h string) error {
	n := NormalizeHost(h)
	if IsMetadataName(n) {
		return fmt.Errorf("host %q is a cloud metadata name, which is never reachable from a sandbox", h)
	}
	a, err := netip.ParseAddr(n)
	if err != nil {
		if _, loose := ParseLooseIPv4(n); loose {
			return fmt.Errorf("host %q is a non-canonical IPv4 form; write it as a dotted quad", h)
		}
		return nil
	}
	if ClassifyAddr(a) == AddrNever {
		return fmt.Errorf("host %s is link-local, unspecified, multicast or a metadata address, which is never reachable", h)
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// CheckHostPattern rejects host patterns that would match too much or cannot
// match anything: a bare "*", a wildcard over a top-level domain ("*.com"),
// wildcards in the middle of a name, and characters hosts cannot have.
func CheckHostPattern(h string) error {
	if h != strings.TrimSpace(h) || h == "" {
		return fmt.Errorf("host %q is empty or has spaces", h)
	}
	if _, err := netip.ParseAddr(strings.Trim(h, "[]")); err == nil {
		return nil
	}
	if h == "*" || h == "**" {
		return fmt.Errorf("host %q would allow every host; name the hosts, e.g. \"*.example.com\"", h)
	}
	if strings.Contains(h, "://") || strings.ContainsAny(h, "/:?#@") {
		return fmt.Errorf("host %q must be a bare host name, without scheme, port or path", h)
	}
	labels := strings.Split(strings.TrimSuffix(strings.ToLower(h), "."), ".")
	wild := 0
	for i, l := range labels {
		switch {
		case l == "*" || l == "**":
			if i != wild {
				return fmt.Errorf("host %q: wildcards must be the leftmost labels, e.g. \"*.example.com\"", h)
			}
			wild++
		case l == "":
			return fmt.Errorf("host %q has an empty label", h)
		case strings.Contains(l, "*"):
			return fmt.Errorf("host %q: a wildcard must be a whole label (\"*.\" or \"**.\")", h)
		default:
			for _, r := range l {
				if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
					return fmt.Errorf("host %q has the invalid character %q", h, r)
				}
			}
		}
	}
	if wild > 0 && len(labels)-wild < 2 {
		return fmt.Errorf("host %q wildcards a whole top-level domain; name the registrable domain, e.g. \"*.example%s\"", h, "."+labels[len(labels)-1])
	}
	return nil
}

// ParseIPOrCIDR parses "10.0.0.1" or "10.0.0.0/8".
func ParseIPOrCIDR(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("allowed_ips %q is not an IP or CIDR (e.g. 10.0.5.20 or 10.0.5.0/24)", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("allowed_ips %q is not an IP or CIDR (e.g. 10.0.5.20 or 10.0.5.0/24)", s)
	}
	a = a.Unmap() // an IPv4-mapped address is the IPv4 address it carries
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// CheckNetworkPolicies validates network policies that live inside another
// document (e.g. a blueprint's components.policy.additions at base), locating
// problems in doc.
func CheckNetworkPolicies(doc *strictyaml.Doc, m map[string]*NetworkPolicy, base []string) (errs, warns Problems) {
	v := &validator{doc: doc}
	v.networkPolicies(m, base)
	v.unenforcedNetwork(m, base)
	return v.errs, v.warns
}

// unenforcedNetwork reports the unenforced fields of network policies that
// live at base (a preset's or a blueprint's additions): Unenforced's notes,
// which a policy file gets from policy.
func (v *validator) unenforcedNetwork(m map[string]*NetworkPolicy, base []string) {
	for _, u := range Unenforced(&Policy{NetworkPolicies: m}) {
		v.warnf(at(base, u.Path[1:]...), "%s", u.Message)
	}
}
