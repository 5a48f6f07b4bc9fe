package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nemoclaw/nemoclaw/runner/policy"
)

// The address classes, the metadata names and the loose IPv4 forms are
// policy rules: runner/policy applies them when it validates a policy and
// the proxy applies the same ones to every resolved address.
type ipClass = policy.AddrClass

const (
	classPublic   = policy.AddrPublic
	classPrivate  = policy.AddrPrivate
	classLoopback = policy.AddrLoopback
	classNever    = policy.AddrNever
)

func classify(a netip.Addr) ipClass              { return policy.ClassifyAddr(a) }
func isMetadataName(h string) bool               { return policy.IsMetadataName(h) }
func parseLooseIPv4(s string) (netip.Addr, bool) { return policy.ParseLooseIPv4(s) }
func parsePrefix(s string) (netip.Prefix, error) { return policy.ParseIPOrCIDR(s) }

// target is a parsed request destination.
type target struct {
	host string     // lower-case name, or canonical IP string
	ip   netip.Addr // set when host is an IP literal
	port int
}

// String implements fmt.Stringer.
func (t target) String() string { return net.JoinHostPort(t.host, strconv.Itoa(t.port)) }

// errTarget marks a destination refused before any policy lookup.
var errTarget = errors.New("refused destination")

// parseTarget normalises a host and port from a request. Non-canonical IPv4
// spellings and metadata names are refused outright: they exist to confuse
// filters.
func parseTarget(host string, port int) (target, error) {
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		h = h[1 : len(h)-1]
	}
	if i := strings.IndexByte(h, '%'); i >= 0 { // IPv6 zone
		return target{}, fmt.Errorf("%w: zoned IPv6 address %q", errTarget, clip(host))
	}
	if h == "" {
		return target{}, fmt.Errorf("%w: empty host", errTarget)
	}
	if port < 1 || port > 65535 {
		return target{}, fmt.Errorf("%w: port %d", errTarget, port)
	}
	if a, err := netip.ParseAddr(h); err == nil {
		a = a.Unmap()
		return target{host: a.String(), ip: a, port: port}, nil
	}
	if a, ok := parseLooseIPv4(h); ok {
		return target{}, fmt.Errorf("%w: %q is a non-canonical spelling of %s", errTarget, clip(host), a)
	}
	if !validHostName(h) {
		return target{}, fmt.Errorf("%w: %q is not a valid host name", errTarget, clip(host))
	}
	if isMetadataName(h) {
		return target{}, fmt.Errorf("%w: %s is a cloud metadata name", errTarget, h)
	}
	return target{host: h, port: port}, nil
}

// splitHostPort splits "host:port", defaulting the port.
// validHostName reports whether h (lower case, no trailing dot) is a host
// name of letters, digits, '-' and '_' in non-empty dot-separated labels.
func validHostName(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for _, l := range strings.Split(h, ".") {
		if l == "" || len(l) > 63 {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

func splitHostPort(hp string, defPort int) (string, int, error) {
	h, p, err := net.SplitHostPort(hp)
	if err != nil {
		if strings.Contains(err.Error(), "missing port") {
			return strings.Trim(hp, "[]"), defPort, nil
		}
		return "", 0, err
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, fmt.Errorf("port %q: %w", p, err)
	}
	return h, n, nil
}

// ipAllowed decides whether e may reach address a.
func (e *endpoint) ipAllowed(a netip.Addr) bool {
	a = a.Unmap()
	inNets := slices.ContainsFunc(e.nets, func(p netip.Prefix) bool { return p.Contains(a) })
	switch classify(a) {
	case classNever:
		return false
	case classLoopback:
		return inNets || e.hostIP == a
	case classPrivate:
		return inNets || e.hostIP == a || e.exact
	}
	if len(e.nets) > 0 {
		return inNets || e.hostIP == a
	}
	return true
}

// Resolver looks up the addresses of a host name; net.DefaultResolver
// satisfies it.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// resolveChecked resolves t for endpoint e and keeps only the addresses e
// may reach. The proxy dials only what this returns, so a name that
// re-resolves to something else later is never followed.
func (p *Proxy) resolveChecked(ctx context.Context, t target, e *endpoint) ([]netip.Addr, error) {
	var addrs []netip.Addr
	if t.ip.IsValid() {
		addrs = []netip.Addr{t.ip}
	} else {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		as, err := p.resolver.LookupNetIP(rctx, "ip", t.host)
		if err != nil {
			return nil, fmt.Errorf("resolve %s: %w", t.host, err)
		}
		addrs = as
	}
	var ok []netip.Addr
	var refused []string
	for _, a := range addrs {
		a = a.Unmap()
		if e.ipAllowed(a) {
			ok = append(ok, a)
		} else {
			refused = append(refused, fmt.Sprintf("%s (%s)", a, classify(a)))
		}
	}
	if len(ok) == 0 {
		return nil, &ssrfError{host: t.host, addrs: refused, rule: e.ruleName()}
	}
	return ok, nil
}

// ssrfError is a destination whose every address the endpoint may not reach.
type ssrfError struct {
	host  string
	addrs []string
	rule  string
}

// Error implements error.
func (e *ssrfError) Error() string {
	return fmt.Sprintf("%s resolves only to addresses the sandbox may not reach: %s", e.host, strings.Join(e.addrs, ", "))
}

// dialChecked dials the first reachable checked address.
func (p *Proxy) dialChecked(ctx context.Context, t target, e *endpoint) (net.Conn, error) {
	addrs, err := p.resolveChecked(ctx, t, e)
	if err != nil {
		return nil, err
	}
	var firstErr error
	for _, a := range addrs {
		c, err := p.dialer.DialContext(ctx, "tcp", netip.AddrPortFrom(a, uint16(t.port)).String())
		if err == nil {
			return c, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return nil, firstErr
}
