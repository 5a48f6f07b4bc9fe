package egress

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"

	"github.com/nemoclaw/nemoclaw/runner/policy"
)

// Decision outcomes, as written to the audit log.
const (
	Allow     = "allow"
	Deny      = "deny"
	AuditDeny = "audit" // would be denied; allowed because enforcement: audit
)

// verdict is the outcome of evaluating one connection or request.
type verdict struct {
	action string
	ep     *endpoint // the endpoint that decided an allow, or nil
	rule   string    // rule that decided (allow rule, deny rule, or "")
	reason string
	// missing describes the policy entry that would have allowed it.
	missing string
	// noEndpoint: no endpoint at all covers host:port (approvals apply).
	noEndpoint bool
	// status is the HTTP status of the refusal; 0 means 403.
	status int
	// steps replaces the usual "add it to the policy" next steps.
	steps string
}

// httpStatus is the status code a refusal is answered with.
func (v *verdict) httpStatus() int {
	if v.status != 0 {
		return v.status
	}
	return http.StatusForbidden
}

// errorText is the "error" field of a refusal's JSON body.
func (v *verdict) errorText() string {
	if v.status == http.StatusServiceUnavailable {
		return "no inference router is running"
	}
	return "egress denied by sandbox policy"
}

// inferenceHost is the name the agent calls for inference. It is answered
// by the supervisor alone: never resolved by the host, never dialled.
const inferenceHost = "inference.local"

// inferenceVerdict refuses inference.local with 503 until a router serves it.
func inferenceVerdict(t target) *verdict {
	return &verdict{action: Deny, status: http.StatusServiceUnavailable,
		reason:  fmt.Sprintf("%s is served by the sandbox's inference router, and no inference router is running for this sandbox", t),
		missing: "an inference route for this sandbox",
		steps:   "configure inference in the sandbox's blueprint and restart the sandbox; the request never left the supervisor"}
}

// errQuery marks a query string that does not parse strictly.
var errQuery = errors.New("ambiguous query string")

// parseQueryStrict parses a raw query as an upstream might, refusing what
// parsers read differently: a ';' separator (Go drops the pair, others
// split on it), a malformed %-escape (Go drops the pair, others keep it
// raw). It returns every value of every key in order.
func parseQueryStrict(raw string) (url.Values, error) {
	if raw == "" {
		return nil, nil // most requests: no map to allocate (rules only read it)
	}
	q := url.Values{}
	if strings.IndexByte(raw, ';') >= 0 {
		return nil, fmt.Errorf("%w: ';' in query (read as a separator by some servers)", errQuery)
	}
	for _, pair := range strings.Split(raw, "&") {
		if pair == "" {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		dk, err := url.QueryUnescape(k)
		if err != nil {
			return nil, fmt.Errorf("%w: malformed %%-escape in query key", errQuery)
		}
		dv, err := url.QueryUnescape(v)
		if err != nil {
			return nil, fmt.Errorf("%w: malformed %%-escape in query value", errQuery)
		}
		q[dk] = append(q[dk], dv)
	}
	return q, nil
}

// requestInfo builds what L7 rules look at. A query that does not parse
// strictly is refused when any candidate has query rules: what the rules
// would see is not what the upstream reads.
func requestInfo(r *http.Request, cp CanonPath, cands []*endpoint) (reqInfo, *verdict) {
	ri := reqInfo{method: r.Method, path: cp, websocket: isWebSocket(r)}
	q, err := parseQueryStrict(r.URL.RawQuery)
	if err != nil {
		for _, e := range cands {
			if e.hasQueryRules() {
				return ri, &verdict{action: Deny, reason: fmt.Sprintf("%v, and %s has query rules", err, e.ruleName()),
					missing: "send the query as key=value pairs joined by '&', with valid %-escapes"}
			}
		}
		q, _ = url.ParseQuery(r.URL.RawQuery)
	}
	ri.query = q
	return ri, nil
}

func (e *endpoint) hasQueryRules() bool {
	for _, list := range [][]*rule{e.allow, e.deny} {
		for _, r := range list {
			if len(r.query) > 0 {
				return true
			}
		}
	}
	return false
}

// reqInfo is what L7 rules look at.
type reqInfo struct {
	method    string
	path      CanonPath
	query     url.Values
	websocket bool
}

// candidates returns the endpoints covering host:port for this peer, plus a
// verdict when there are none.
func (g *generation) candidates(t target, peer func() *peerInfo, extra []*endpoint) ([]*endpoint, *verdict) {
	if t.host == inferenceHost {
		return nil, inferenceVerdict(t)
	}
	var hostHits, cands []*endpoint
	for _, list := range [][]*endpoint{g.eps, extra} {
		for _, e := range list {
			if e.matchHostPort(t.host, t.ip, t.port) {
				hostHits = append(hostHits, e)
			}
		}
	}
	if len(hostHits) == 0 {
		reason := fmt.Sprintf("no network policy allows %s", t)
		if t.ip.IsLoopback() {
			// NO_PROXY leaves out a loopback address the policy opens to the
			// host, so the sandbox's own services on it come here.
			reason += fmt.Sprintf("; this is the host's loopback, not the sandbox's: reach a service inside the sandbox as localhost:%d (in NO_PROXY)", t.port)
		}
		return nil, &verdict{
			action:     Deny,
			reason:     reason,
			missing:    fmt.Sprintf("an endpoint {host: %s, port: %d} in network_policies", t.host, t.port),
			noEndpoint: true,
		}
	}
	var pi *peerInfo
	for _, e := range hostHits {
		if len(e.binaries) > 0 && pi == nil {
			pi = peer()
		}
		if e.matchBinary(pi) {
			cands = append(cands, e)
		}
	}
	if len(cands) == 0 {
		exe := "unknown"
		if pi != nil && pi.exe != "" {
			exe = pi.exe
		}
		return nil, &verdict{
			action:  Deny,
			reason:  fmt.Sprintf("%s is allowed only for other programs (%s binaries), not %s", t, hostHits[0].key, exe),
			missing: fmt.Sprintf("binary %s in network_policies.%s.binaries", exe, hostHits[0].key),
		}
	}
	return cands, nil
}

// needsInspection reports whether requests on a connection to these
// endpoints must be read, which for TLS means terminating it.
func needsInspection(cands []*endpoint) bool {
	for _, e := range cands {
		if e.inspect {
			return true
		}
	}
	return false
}

// decideRequest evaluates one HTTP request against the candidate endpoints.
// deny_rules of any candidate beat every allow; audit-mode endpoints turn
// their own denials into AuditDeny.
func decideRequest(cands []*endpoint, r reqInfo) verdict {
	var scoped []*endpoint
	for _, e := range cands {
		if e.pathScope == nil || matchSegments(e.pathScope, r.path.Segments) {
			scoped = append(scoped, e)
		}
	}
	if len(scoped) == 0 {
		e := cands[0]
		return verdict{action: Deny, reason: fmt.Sprintf("path %s is outside the paths this host allows (%s.path: %s)", r.path, e.ruleName(), e.ep.Path),
			missing: fmt.Sprintf("an endpoint for %s whose path covers %s", e.ep.Host, r.path)}
	}
	var auditHit *verdict
	for _, e := range scoped {
		for _, d := range e.deny {
			if d.matchesDeny(r.method, r.path, r.query) {
				v := verdict{action: Deny, ep: e, rule: d.src,
					reason:  fmt.Sprintf("%s %s is blocked by %s", r.method, r.path, d.src),
					missing: fmt.Sprintf("remove or narrow %s", d.src)}
				if !e.audit {
					return v
				}
				v.action = AuditDeny
				auditHit = &v
			}
		}
	}
	var last verdict
	// enforced: an enforce-mode endpoint refused the request; it beats any
	// audit-mode endpoint's AuditDeny (enforce wins).
	enforced := false
	for _, e := range scoped {
		if r.websocket && e.protocol == policy.ProtoREST {
			last = verdict{action: Deny, reason: fmt.Sprintf("WebSocket upgrade to a rest endpoint (%s)", e.ruleName()),
				missing: fmt.Sprintf("protocol: websocket on %s", e.ruleName())}
			if e.audit && auditHit == nil {
				auditHit = &verdict{action: AuditDeny, ep: e, reason: last.reason, missing: last.missing}
			}
			enforced = enforced || !e.audit
			continue
		}
		if !e.l7 {
			if auditHit != nil && auditHit.ep == e {
				return *auditHit
			}
			return verdict{action: Allow, ep: e, rule: e.ruleName()}
		}
		for _, a := range e.allow {
			if a.matches(r.method, r.path, r.query) {
				if auditHit != nil && auditHit.ep == e {
					return *auditHit
				}
				return verdict{action: Allow, ep: e, rule: a.src}
			}
		}
		last = verdict{action: Deny, reason: fmt.Sprintf("%s %s matches no rule of %s", r.method, r.path, e.ruleName()),
			missing: fmt.Sprintf("a rule {allow: {method: %s, path: %s}} in %s.rules", r.method, r.path, e.ruleName())}
		if e.audit && auditHit == nil {
			auditHit = &verdict{action: AuditDeny, ep: e, reason: last.reason, missing: last.missing}
		}
		enforced = enforced || !e.audit
	}
	if auditHit != nil && !enforced {
		return *auditHit
	}
	return last
}

// noProxy is the sandbox's NO_PROXY: loopback stays inside the sandbox
// (its own services) except a loopback address the policy opens to the
// host's services, which must go through the proxy to get there (the
// sandbox's loopback is not the host's). The sandbox's own services stay
// reachable as localhost. Computed at start; a reload does not change a
// running program's environment.
func (g *generation) noProxy() string {
	v4, v6 := netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()
	list := []string{"localhost"}
	for _, a := range []netip.Addr{v4, v6} {
		opened := false
		for _, e := range g.eps {
			if e.hostIP == a || slices.ContainsFunc(e.nets, func(p netip.Prefix) bool { return p.Contains(a) }) {
				opened = true
			}
		}
		if !opened {
			list = append(list, a.String())
		}
	}
	return strings.Join(list, ",")
}
