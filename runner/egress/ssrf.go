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
)

// ipClass is how an address may be reached from a sandbox.
type ipClass int

const (
	classPublic   ipClass = iota
	classPrivate          // RFC 1918, CGNAT, ULA: only when an endpoint names it
	classLoopback         // only through allowed_ips or an IP-literal host
	classNever            // link-local, unspecified, multicast, metadata
)

// String implements fmt.Stringer.
func (c ipClass) String() string {
	return [...]string{"public", "private", "loopback", "never-reachable"}[c]
}

var (
	privateV4 = []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("172.16.0.0/12"),
		netip.MustParsePrefix("192.168.0.0/16"),
		netip.MustParsePrefix("100.64.0.0/10"),
		netip.MustParsePrefix("198.18.0.0/15"),
	}
	neverV4 = []netip.Prefix{
		netip.MustParsePrefix("0.0.0.0/8"),
		netip.MustParsePrefix("169.254.0.0/16"),
		netip.MustParsePrefix("224.0.0.0/4"),
		netip.MustParsePrefix("240.0.0.0/4"),
		netip.MustParsePrefix("100.100.100.200/32"), // Alibaba metadata
	}
	nat64 = netip.MustParsePrefix("64:ff9b::/96")
	// nat64Local is RFC 8215's local-use NAT64 prefix: a site's own
	// translator, so at least private, and never when the IPv4 address in
	// its last 32 bits (the /96 form) is.
	nat64Local = netip.MustParsePrefix("64:ff9b:1::/48")
	// v4Compat is the deprecated IPv4-compatible form ::a.b.c.d (RFC 4291
	// 2.5.5.1): no legitimate destination, and some stacks route it as
	// IPv4. (:: and ::1 are in it and classified as themselves.)
	v4Compat = netip.MustParsePrefix("::/96")
	sixTo4   = netip.MustParsePrefix("2002::/16")
	ula      = netip.MustParsePrefix("fc00::/7")
	awsIMDS  = netip.MustParseAddr("fd00:ec2::254")
)

// classify sorts an address into a reachability class. IPv4 embedded in
// IPv6 (mapped, NAT64, 6to4) is judged as the IPv4 address it carries.
func classify(a netip.Addr) ipClass {
	a = a.Unmap()
	if a.Is6() {
		switch {
		case nat64.Contains(a):
			b := a.As16()
			return classify(netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}))
		case sixTo4.Contains(a):
			b := a.As16()
			return max(classify(netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]})), classPublic)
		case nat64Local.Contains(a):
			b := a.As16()
			return max(classify(netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})), classPrivate)
		case v4Compat.Contains(a) && !a.IsUnspecified() && !a.IsLoopback():
			return classNever
		case a == awsIMDS:
			return classNever
		}
	}
	switch {
	case !a.IsValid(), a.IsUnspecified(), a.IsLinkLocalUnicast(), a.IsLinkLocalMulticast(),
		a.IsMulticast(), a.IsInterfaceLocalMulticast():
		return classNever
	case a.IsLoopback():
		return classLoopback
	}
	if a.Is4() {
		for _, p := range neverV4 {
			if p.Contains(a) {
				return classNever
			}
		}
		for _, p := range privateV4 {
			if p.Contains(a) {
				return classPrivate
			}
		}
		return classPublic
	}
	if ula.Contains(a) || a.IsPrivate() {
		return classPrivate
	}
	return classPublic
}

// metadataNames are cloud instance-metadata host names, refused whatever the
// policy says.
var metadataNames = []string{
	"metadata", "metadata.google.internal", "metadata.goog", "metadata.azure.internal",
	"instance-data", "instance-data.ec2.internal", "metadata.tencentyun.com",
	"metadata.packet.net", "metadata.platformequinix.com",
}

func isMetadataName(h string) bool { return slices.Contains(metadataNames, h) }

// parseLooseIPv4 parses the inet_aton forms that resolvers and some HTTP
// clients accept: "2130706433", "0x7f000001", "0177.0.0.1", "127.1". It
// reports ok only for strings that are such a form.
func parseLooseIPv4(s string) (netip.Addr, bool) {
	if s == "" || strings.Trim(s, "0123456789abcdefxABCDEFX.") != "" {
		return netip.Addr{}, false
	}
	parts := strings.Split(s, ".")
	if len(parts) > 4 {
		return netip.Addr{}, false
	}
	if parts[len(parts)-1] == "" && len(parts) > 1 { // trailing dot
		parts = parts[:len(parts)-1]
	}
	vals := make([]uint64, len(parts))
	for i, p := range parts {
		if p == "" {
			return netip.Addr{}, false
		}
		base := 10
		switch {
		case len(p) > 1 && (p[:2] == "0x" || p[:2] == "0X"):
			base, p = 16, p[2:]
			if p == "" {
				p = "0"
			}
		case len(p) > 1 && p[0] == '0':
			base, p = 8, p[1:]
		}
		v, err := strconv.ParseUint(p, base, 32)
		if err != nil {
			return netip.Addr{}, false
		}
		vals[i] = v
	}
	var n uint64
	last := len(vals) - 1
	for i, v := range vals[:last] {
		if v > 255 {
			return netip.Addr{}, false
		}
		n |= v << (24 - 8*uint(i))
	}
	if vals[last] >= 1<<(8*uint(4-last)) {
		return netip.Addr{}, false
	}
	n |= vals[last]
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}), true
}

// parsePrefix accepts an IP or a CIDR.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

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
