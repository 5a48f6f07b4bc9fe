package egress

import (
	"fmt"
	"net/url"

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
	var hostHits, cands []*endpoint
	for _, list := range [][]*endpoint{g.eps, extra} {
		for _, e := range list {
			if e.matchHostPort(t.host, t.ip, t.port) {
				hostHits = append(hostHits, e)
			}
		}
	}
	if len(hostHits) == 0 {
		return nil, &verdict{
			action:     Deny,
			reason:     fmt.Sprintf("no network policy allows %s", t),
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
			if d.matches(r.method, r.path, r.query) {
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
	for _, e := range scoped {
		if r.websocket && e.protocol == policy.ProtoREST {
			last = verdict{action: Deny, reason: fmt.Sprintf("WebSocket upgrade to a rest endpoint (%s)", e.ruleName()),
				missing: fmt.Sprintf("protocol: websocket on %s", e.ruleName())}
			if e.audit && auditHit == nil {
				auditHit = &verdict{action: AuditDeny, ep: e, reason: last.reason, missing: last.missing}
			}
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
	}
	if auditHit != nil {
		return *auditHit
	}
	return last
}
