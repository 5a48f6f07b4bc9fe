package policy

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// The reachability of addresses and names is a policy rule: Validate refuses
// an endpoint that names a never-reachable address, and the egress proxy
// applies the same classes to every address a name resolves to.

// AddrClass is how an address may be reached from a sandbox.
type AddrClass int

const (
	// AddrPublic addresses are reachable through a named host.
	AddrPublic AddrClass = iota
	// AddrPrivate (RFC 1918, CGNAT, ULA) only when an endpoint names it.
	AddrPrivate
	// AddrLoopback only through allowed_ips or an IP-literal host.
	AddrLoopback
	// AddrNever (link-local, unspecified, multicast, metadata) never.
	AddrNever
)

// String implements fmt.Stringer.
func (c AddrClass) String() string {
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

// ClassifyAddr sorts an address into a reachability class. IPv4 embedded in
// IPv6 (mapped, NAT64, 6to4) is judged as the IPv4 address it carries.
func ClassifyAddr(a netip.Addr) AddrClass {
	a = a.Unmap()
	if a.Is6() {
		switch {
		case nat64.Contains(a):
			b := a.As16()
			return ClassifyAddr(netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}))
		case sixTo4.Contains(a):
			b := a.As16()
			return max(ClassifyAddr(netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]})), AddrPublic)
		case nat64Local.Contains(a):
			b := a.As16()
			return max(ClassifyAddr(netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})), AddrPrivate)
		case v4Compat.Contains(a) && !a.IsUnspecified() && !a.IsLoopback():
			return AddrNever
		case a == awsIMDS:
			return AddrNever
		}
	}
	switch {
	case !a.IsValid(), a.IsUnspecified(), a.IsLinkLocalUnicast(), a.IsLinkLocalMulticast(),
		a.IsMulticast(), a.IsInterfaceLocalMulticast():
		return AddrNever
	case a.IsLoopback():
		return AddrLoopback
	}
	if a.Is4() {
		for _, p := range neverV4 {
			if p.Contains(a) {
				return AddrNever
			}
		}
		for _, p := range privateV4 {
			if p.Contains(a) {
				return AddrPrivate
			}
		}
		return AddrPublic
	}
	if ula.Contains(a) || a.IsPrivate() {
		return AddrPrivate
	}
	return AddrPublic
}

// metadataNames are cloud instance-metadata host names, refused whatever the
// policy says.
var metadataNames = []string{
	"metadata", "metadata.google.internal", "metadata.goog", "metadata.azure.internal",
	"instance-data", "instance-data.ec2.internal", "metadata.tencentyun.com",
	"metadata.packet.net", "metadata.platformequinix.com",
}

// IsMetadataName reports whether h (lower-case, no trailing dot) is a cloud
// instance-metadata host name.
func IsMetadataName(h string) bool { return slices.Contains(metadataNames, h) }

// ParseLooseIPv4 parses the inet_aton forms that resolvers and some HTTP
// clients accept: "2130706433", "0x7f000001", "0177.0.0.1", "127.1". It
// reports ok only for strings that are such a form.
func ParseLooseIPv4(s string) (netip.Addr, bool) {
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
