package egress

import (
	"net"
	"testing"

	"github.com/miekg/dns"

	"github.com/nemoclaw/nemoclaw/runner/policy"
)

// TestDNS queries the policy-gated resolver over real UDP and TCP sockets.
func TestDNS(t *testing.T) {
	t.Parallel()
	h := newHarness(t, pol(map[string][]*policy.Endpoint{
		"api":  {ep("api.test", 443, loopOK)},
		"loop": {ep("loop.test", 443)},   // resolves to loopback, not allowed_ips: no answer
		"corp": {ep("*.corp.test", 443)}, // glob, private: no answer
		"meta": {ep("meta.test", 443)},
	}), nil)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = h.p.ServeDNS(pc, tl) }()
	cases := []struct {
		name  string
		qtype uint16
		rcode int
		addrs []string
	}{
		{"api.test.", dns.TypeA, dns.RcodeSuccess, []string{"127.0.0.1"}},
		{"API.TEST.", dns.TypeA, dns.RcodeSuccess, []string{"127.0.0.1"}},
		{"api.test.", dns.TypeAAAA, dns.RcodeSuccess, nil},
		{"api.test.", dns.TypeTXT, dns.RcodeSuccess, nil},
		{"loop.test.", dns.TypeA, dns.RcodeSuccess, nil},
		{"a.corp.test.", dns.TypeA, dns.RcodeSuccess, nil},
		{"meta.test.", dns.TypeA, dns.RcodeSuccess, nil},
		{"x.corp.test.", dns.TypeA, dns.RcodeNameError, nil},
		{"exfil-6c6f6f6b.evil.example.", dns.TypeA, dns.RcodeRefused, nil},
		{"other.test.", dns.TypeA, dns.RcodeRefused, nil},
		{"metadata.google.internal.", dns.TypeA, dns.RcodeRefused, nil},
	}
	for _, proto := range []string{"udp", "tcp"} {
		addr := pc.LocalAddr().String()
		if proto == "tcp" {
			addr = tl.Addr().String()
		}
		c := &dns.Client{Net: proto}
		for _, tc := range cases {
			m := new(dns.Msg)
			m.SetQuestion(tc.name, tc.qtype)
			r, _, err := c.Exchange(m, addr)
			if err != nil {
				t.Fatalf("%s %s: %v", proto, tc.name, err)
			}
			if r.Rcode != tc.rcode {
				t.Errorf("%s %s %s: rcode %s want %s", proto, tc.name, dns.TypeToString[tc.qtype], dns.RcodeToString[r.Rcode], dns.RcodeToString[tc.rcode])
			}
			var got []string
			for _, rr := range r.Answer {
				switch a := rr.(type) {
				case *dns.A:
					got = append(got, a.A.String())
				case *dns.AAAA:
					got = append(got, a.AAAA.String())
				}
			}
			if len(got) != len(tc.addrs) || (len(got) > 0 && got[0] != tc.addrs[0]) {
				t.Errorf("%s %s: answers %v want %v", proto, tc.name, got, tc.addrs)
			}
		}
	}
	// A reload changes the answers at once.
	if err := h.p.Reload(pol(map[string][]*policy.Endpoint{"other": {ep("other.test", 443, loopOK)}})); err != nil {
		t.Fatal(err)
	}
	m := new(dns.Msg)
	m.SetQuestion("other.test.", dns.TypeA)
	if r, _, err := (&dns.Client{}).Exchange(m, pc.LocalAddr().String()); err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Fatalf("after reload: %v %v", r, err)
	}
}
