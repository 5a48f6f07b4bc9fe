package egress

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// ServeDNS answers the sandbox's DNS on pc (UDP) and l (TCP); either may be
// nil. Only names that some endpoint of the current policy (or an approval)
// covers are resolved, and only to addresses that endpoint may reach; every
// other query is refused and audited, so DNS cannot carry data out and tools
// that resolve before they connect still work. It returns when both servers
// stop (Close).
func (p *Proxy) ServeDNS(pc net.PacketConn, l net.Listener) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	h := dns.HandlerFunc(p.answerDNS)
	start := func(s *dns.Server) {
		closeRaw := func() {
			if s.PacketConn != nil {
				_ = s.PacketConn.Close()
			}
			if s.Listener != nil {
				_ = s.Listener.Close()
			}
		}
		// Shutdown refuses a server that has not started serving yet
		// (and closes nothing): close its sockets then, so that it
		// cannot start.
		if !p.addCloser(closerFunc(func() error {
			if s.Shutdown() != nil {
				closeRaw()
			}
			return nil
		})) {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.ActivateAndServe(); err != nil && !errors.Is(err, net.ErrClosed) {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	if pc != nil {
		start(&dns.Server{PacketConn: pc, Handler: h})
	}
	if l != nil {
		start(&dns.Server{Listener: l, Handler: h, ReadTimeout: 5 * time.Second})
	}
	wg.Wait()
	return errors.Join(errs...)
}

type closerFunc func() error

// Close implements io.Closer.
func (f closerFunc) Close() error { return f() }

// dnsEndpoints returns the endpoints whose host pattern covers name.
func (p *Proxy) dnsEndpoints(name string) []*endpoint {
	var out []*endpoint
	for _, list := range [][]*endpoint{p.gen.Load().eps, p.appr.granted()} {
		for _, e := range list {
			if !e.hostIP.IsValid() && e.host.match(name) {
				out = append(out, e)
			}
		}
	}
	return out
}

func (p *Proxy) answerDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.RecursionAvailable = true
	if len(req.Question) != 1 || req.Opcode != dns.OpcodeQuery {
		m.Rcode = dns.RcodeRefused
		_ = w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := strings.ToLower(strings.TrimSuffix(q.Name, "."))
	ev := &Event{Class: "DNS Activity", Activity: "query", Host: name, Method: dns.TypeToString[q.Qtype], Gen: p.Generation()}
	if !p.dnsLimit.Allow() {
		// Over the sandbox's query rate: refused without a lookup, and
		// counted under one summary key rather than one line per name.
		ev.Host, ev.Decision, ev.Reason = "(dns rate limit)", Deny, "the sandbox exceeded its DNS query rate"
		p.audit.record(ev)
		m.Rcode = dns.RcodeRefused
		_ = w.WriteMsg(m)
		return
	}
	if name == inferenceHost {
		// Answered here, never by the host's resolver: a LAN host of this
		// name must not receive the agent's prompts.
		ev.Decision, ev.Rule = Allow, "inference.local (answered by the supervisor)"
		if q.Qtype == dns.TypeA {
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 30}, A: net.IP(InferenceAddr.AsSlice())})
		}
		p.audit.record(ev)
		_ = w.WriteMsg(m)
		return
	}
	eps := p.dnsEndpoints(name)
	if !validHostName(name) {
		// A label holding an escaped dot ("x\.wild.test") or any other
		// byte a host name cannot hold would match a wildcard label by
		// label and then resolve as another name.
		ev.Host = clip(strconv.Quote(name))
		eps = nil
	}
	if len(eps) == 0 || isMetadataName(name) {
		ev.Decision, ev.Reason = Deny, "no network policy names this host"
		p.audit.record(ev)
		m.Rcode = dns.RcodeRefused
		_ = w.WriteMsg(m)
		return
	}
	ev.Decision, ev.Rule = Allow, eps[0].ruleName()
	network := ""
	switch q.Qtype {
	case dns.TypeA:
		network = "ip4"
	case dns.TypeAAAA:
		network = "ip6"
	}
	if network != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		addrs, err := p.resolver.LookupNetIP(ctx, network, name)
		cancel()
		var de *net.DNSError
		switch {
		case errors.As(err, &de) && de.IsNotFound:
			m.Rcode = dns.RcodeNameError
		case err != nil:
			m.Rcode = dns.RcodeServerFailure
		}
		for _, a := range addrs {
			a = a.Unmap()
			if (network == "ip4") != a.Is4() || !anyAllows(eps, a) {
				continue
			}
			hdr := dns.RR_Header{Name: q.Name, Rrtype: q.Qtype, Class: dns.ClassINET, Ttl: 30}
			if a.Is4() {
				m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: net.IP(a.AsSlice())})
			} else {
				m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr, AAAA: net.IP(a.AsSlice())})
			}
		}
	}
	p.audit.record(ev)
	_ = w.WriteMsg(m)
}

func anyAllows(eps []*endpoint, a netip.Addr) bool {
	for _, e := range eps {
		if e.ipAllowed(a) {
			return true
		}
	}
	return false
}
