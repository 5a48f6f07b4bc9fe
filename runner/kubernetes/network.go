package kubernetes

import (
	"fmt"
	"iter"
	"net/netip"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/nemoclaw/nemoclaw/runner/blueprint"
	"github.com/nemoclaw/nemoclaw/runner/policy"
)

// InferenceHost is the name the supervisor's router answers inside the
// pod: no rule of the NetworkPolicy is needed for it.
const InferenceHost = "inference.local"

// Address ranges the public-egress rule excludes: RFC 1918, CGNAT,
// benchmarking, link-local (cloud metadata), loopback, multicast and
// reserved for IPv4; for IPv6 the forms that embed an IPv4 address
// (compatible, NAT64, 6to4), unique-local, link-local and
// multicast. IPv4-mapped addresses (::ffff:0:0/96) travel as IPv4 packets,
// which the IPv4 rule judges; the API server refuses them in an ipBlock.
// The proxy refuses all of these too unless an endpoint names them.
var (
	exceptV4 = []string{"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12", "192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/4", "240.0.0.0/4"}
	exceptV6 = []string{"::/96", "64:ff9b::/96", "64:ff9b:1::/48", "2002::/16", "fc00::/7", "fe80::/10", "ff00::/8"}
)

// destination is one host:port set the pod's supervisor dials.
type destination struct {
	host  string
	ports []int
	ips   []string // allowed_ips, verbatim
	why   string   // "network policy KEY" or "inference profile P"
}

// destinations lists what the blueprint's effective policy and the chosen
// inference profile make the supervisor dial.
func destinations(b *blueprint.Blueprint, profile string, prof *blueprint.InferenceProfile) ([]destination, []string) {
	var out []destination
	var notes []string
	for k, e := range endpoints(b.Policy) {
		ports := e.EffectivePorts()
		if len(ports) == 0 {
			ports = []int{443}
		}
		out = append(out, destination{host: strings.ToLower(e.Host), ports: ports, ips: e.AllowedIPs, why: "network policy " + k})
	}
	if prof != nil {
		switch {
		case prof.DynamicEndpoint || prof.Endpoint == "":
			notes = append(notes, fmt.Sprintf("inference profile %s has no fixed endpoint (dynamic_endpoint): the NetworkPolicy opens no port for it; add one for the endpoint you will set", profile))
		default:
			u, err := url.Parse(prof.Endpoint)
			if err != nil || u.Hostname() == "" {
				notes = append(notes, fmt.Sprintf("inference profile %s: endpoint %q is not a URL: the NetworkPolicy opens no port for it", profile, prof.Endpoint))
				break
			}
			port := 443
			if u.Scheme == "http" {
				port = 80
			}
			if p := u.Port(); p != "" {
				port, _ = strconv.Atoi(p)
			}
			out = append(out, destination{host: strings.ToLower(u.Hostname()), ports: []int{port}, why: "inference profile " + profile})
		}
	}
	return out, notes
}

// egressRules turns the destinations into NetworkPolicy egress rules and
// notes for what an IP-based rule cannot express.
func egressRules(b *blueprint.Blueprint, profile string, prof *blueprint.InferenceProfile) ([]networkingv1.NetworkPolicyEgressRule, []string) {
	dests, notes := destinations(b, profile, prof)
	publicPorts := map[int]bool{}
	var named []string
	var exact []networkingv1.NetworkPolicyEgressRule
	for _, d := range dests {
		if d.host == InferenceHost {
			continue // the supervisor's own router
		}
		if len(d.ips) > 0 {
			var peers []networkingv1.NetworkPolicyPeer
			for _, ip := range d.ips {
				cidr, ok := asCIDR(ip)
				if !ok {
					notes = append(notes, fmt.Sprintf("%s: allowed_ips %q is not an IP or CIDR: no rule", d.why, ip))
					continue
				}
				if a := netip.MustParsePrefix(cidr).Addr(); policy.ClassifyAddr(a) == policy.AddrNever {
					notes = append(notes, fmt.Sprintf("%s: allowed_ips %s is never reachable (link-local, metadata, multicast): no rule", d.why, ip))
					continue
				}
				peers = append(peers, networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: cidr}})
			}
			if len(peers) > 0 {
				exact = append(exact, networkingv1.NetworkPolicyEgressRule{To: peers, Ports: tcpPorts(d.ports)})
				notes = append(notes, fmt.Sprintf("%s: %s on %s only to %s, as its allowed_ips name", d.why, orAny(d.host), portList(d.ports), strings.Join(d.ips, ", ")))
			}
			continue
		}
		if a, err := netip.ParseAddr(strings.Trim(d.host, "[]")); err == nil {
			switch class := policy.ClassifyAddr(a); class {
			case policy.AddrPublic, policy.AddrPrivate:
				// The proxy reaches a private address only when an
				// endpoint names it exactly, as this one does.
				exact = append(exact, networkingv1.NetworkPolicyEgressRule{
					To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: netip.PrefixFrom(a, a.BitLen()).String()}}}, Ports: tcpPorts(d.ports)})
				if class == policy.AddrPrivate {
					notes = append(notes, fmt.Sprintf("%s: the private address %s on %s is open because the blueprint names it exactly", d.why, d.host, portList(d.ports)))
				}
			case policy.AddrLoopback:
				notes = append(notes, fmt.Sprintf("%s: %s is the pod's own loopback, not a node's or the host's: run that service in the pod or name a Service instead", d.why, d.host))
			default:
				notes = append(notes, fmt.Sprintf("%s: %s is a %s address: no rule (name it in allowed_ips to open it on purpose)", d.why, d.host, policy.ClassifyAddr(a)))
			}
			continue
		}
		if d.host == "localhost" || strings.HasSuffix(d.host, ".localhost") {
			notes = append(notes, fmt.Sprintf("%s: %s is the pod's own loopback, not a node's or the host's: run that service in the pod or name a Service instead", d.why, d.host))
			continue
		}
		for _, p := range d.ports {
			publicPorts[p] = true
		}
		named = append(named, fmt.Sprintf("%s:%s", orAny(d.host), portList(d.ports)))
		if clusterLocal(d.host) {
			notes = append(notes, fmt.Sprintf("%s: %s looks cluster-internal: it resolves to a private address, which this NetworkPolicy never opens; add an egress rule for its Service's pods (namespaceSelector/podSelector) if the agent must reach it", d.why, d.host))
		}
	}
	rules := []networkingv1.NetworkPolicyEgressRule{dnsRule()}
	if len(publicPorts) > 0 {
		ports := make([]int, 0, len(publicPorts))
		for p := range publicPorts {
			ports = append(ports, p)
		}
		slices.Sort(ports)
		slices.Sort(named)
		named = slices.Compact(named)
		rules = append(rules, networkingv1.NetworkPolicyEgressRule{
			To: []networkingv1.NetworkPolicyPeer{
				{IPBlock: &networkingv1.IPBlock{CIDR: "0.0.0.0/0", Except: exceptV4}},
				{IPBlock: &networkingv1.IPBlock{CIDR: "::/0", Except: exceptV6}},
			},
			Ports: tcpPorts(ports),
		})
		notes = append(notes, fmt.Sprintf("cannot be narrowed by IP (NetworkPolicy has no host names): %s; the pod may open TCP to any public address on port(s) %s, and nemoclaw's proxy in the pod allows only these hosts and their L7 rules", strings.Join(named, ", "), portList(ports)))
	}
	return append(rules, exact...), notes
}

// dnsRule lets the supervisor's resolver reach the cluster DNS (kube-dns
// or CoreDNS labelled k8s-app=kube-dns in kube-system), and nothing else on
// port 53.
func dnsRule() networkingv1.NetworkPolicyEgressRule {
	udp, tcp := corev1.ProtocolUDP, corev1.ProtocolTCP
	dns := intstr.FromInt32(53)
	return networkingv1.NetworkPolicyEgressRule{
		To: []networkingv1.NetworkPolicyPeer{{
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "kube-system"}},
			PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"k8s-app": "kube-dns"}},
		}},
		Ports: []networkingv1.NetworkPolicyPort{{Protocol: &udp, Port: &dns}, {Protocol: &tcp, Port: &dns}},
	}
}

func tcpPorts(ports []int) []networkingv1.NetworkPolicyPort {
	tcp := corev1.ProtocolTCP
	out := make([]networkingv1.NetworkPolicyPort, 0, len(ports))
	for _, p := range ports {
		port := intstr.FromInt32(int32(p))
		out = append(out, networkingv1.NetworkPolicyPort{Protocol: &tcp, Port: &port})
	}
	return out
}

// networkPolicy selects the sandbox's pods (template, warm pool and
// Sandbox alike carry LabelSandbox) and denies all ingress.
func networkPolicy(m objectMeta, egress []networkingv1.NetworkPolicyEgressRule) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		ObjectMeta: m.object(m.name + "-egress"),
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{LabelSandbox: m.name}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
			Egress:      egress,
		},
	}
}

// asCIDR returns s as a CIDR: an address becomes its single-address prefix.
func asCIDR(s string) (string, bool) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked().String(), true
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a, a.BitLen()).String(), true
	}
	return "", false
}

// clusterLocal reports a name that usually resolves inside the cluster.
func clusterLocal(h string) bool {
	if !strings.Contains(h, ".") {
		return true
	}
	for _, s := range []string{".local", ".svc", ".cluster.local", ".internal"} {
		if strings.HasSuffix(h, s) {
			return true
		}
	}
	return false
}

func portList(ports []int) string {
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = strconv.Itoa(p)
	}
	return strings.Join(s, ",")
}

func orAny(h string) string {
	if h == "" {
		return "*"
	}
	return h
}

// endpoints yields the policy's endpoints with their network policy's key,
// in key order, so that the output is the same on every run.
func endpoints(p *policy.Policy) iter.Seq2[string, *policy.Endpoint] {
	return func(yield func(string, *policy.Endpoint) bool) {
		keys := make([]string, 0, len(p.NetworkPolicies))
		for k := range p.NetworkPolicies {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			for _, e := range p.NetworkPolicies[k].Endpoints {
				if e != nil && !yield(k, e) {
					return
				}
			}
		}
	}
}
