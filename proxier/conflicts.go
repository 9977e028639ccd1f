package proxier

import (
	"fmt"
	"net/netip"

	v1 "k8s.io/api/core/v1"

	"github.com/nftproxy/nftproxy/proxier/model"
)

// addressKey is what a Service address is dispatched on in the kernel.
type addressKey struct {
	addr  netip.Addr
	proto v1.Protocol
	port  uint16
}

// withoutAddressConflicts returns the service ports with every external or
// load-balancer address that an earlier service port (by name) already
// uses on the same protocol and port removed from the later one. Two
// Services claiming 192.0.2.1:80/TCP would otherwise ask the kernel for
// two verdicts under one key and fail every transaction; instead the first
// keeps it, and the other is reported (log line and Event) once.
//
// Service ports are immutable: a port that loses an address is replaced
// by a copy, kept across syncs so the Builder sees a stable value.
func (p *Proxier) withoutAddressConflicts(flat []*model.ServicePort) []*model.ServicePort {
	taken := map[addressKey]model.ServicePortName{}
	var out []*model.ServicePort
	copies := map[*model.ServicePort]*model.ServicePort{}
	for i, sp := range flat {
		if len(sp.ExternalIPs) == 0 && len(sp.LoadBalancerIPs) == 0 {
			continue
		}
		var lost []string
		keep := func(ips []netip.Addr) []netip.Addr {
			var kept []netip.Addr
			for _, ip := range ips {
				k := addressKey{ip, sp.Protocol, sp.Port}
				if owner, ok := taken[k]; ok && owner != sp.Name {
					lost = append(lost, fmt.Sprintf("%s (used by %s)", netip.AddrPortFrom(ip, sp.Port), owner))
					continue
				}
				taken[k] = sp.Name
				kept = append(kept, ip)
			}
			return kept
		}
		external, lb := keep(sp.ExternalIPs), keep(sp.LoadBalancerIPs)
		if len(lost) == 0 {
			continue
		}
		c, ok := p.conflictCopies[sp]
		if !ok {
			cp := *sp
			cp.ExternalIPs, cp.LoadBalancerIPs = external, lb
			c = &cp
			p.report([]model.Rejection{{Kind: "Service", Namespace: sp.Name.Namespace, Name: sp.Name.Name, Invalid: true,
				Reason: "DuplicateExternalAddress", Message: fmt.Sprintf("port %s: not programmed on %v", sp.Name.Port, lost)}})
		}
		copies[sp] = c
		if out == nil {
			out = append([]*model.ServicePort(nil), flat...)
		}
		out[i] = c
	}
	p.conflictCopies = copies
	if out == nil {
		return flat
	}
	return out
}
