package conntrack

import (
	"net/netip"

	"golang.org/x/sys/unix"
	v1 "k8s.io/api/core/v1"

	"github.com/nftproxy/nftproxy/proxier/model"
)

// After a repair. While another process has broken our rules (deleted our
// table, flushed a service chain, deleted a dispatch element), a
// connection's first packet to a Service address meets no DNAT, yet makes
// a conntrack entry, without NAT. The entry outlives the repair: a TCP
// client's retransmitted SYN, or a UDP client's next datagram, follows it
// instead of the repaired rules and never reaches a backend (the TCP
// connection times out; the UDP flow stays lost for as long as it keeps
// sending). Repaired deletes such entries: any protocol, original
// destination a Service frontend (ClusterIP, external IP or load-balancer
// IP with its port), no DNAT. A Service address is virtual, so no working
// flow to it goes without DNAT. NodePorts are left alone: node addresses
// are real, and a flow to one of them may be the host's own.

// frontKey is a Service frontend with its protocol.
type frontKey struct {
	proto uint8
	dst   netip.AddrPort
}

var ipProtos = map[v1.Protocol]uint8{v1.ProtocolTCP: unix.IPPROTO_TCP, v1.ProtocolUDP: unix.IPPROTO_UDP, v1.ProtocolSCTP: unix.IPPROTO_SCTP}

// frontendsOf lists the frontends of every service port of st, in the
// families the ruleset programs it in.
func frontendsOf(st *model.State) map[frontKey]struct{} {
	out := map[frontKey]struct{}{}
	for sp := range st.All() {
		proto, ok := ipProtos[sp.Protocol]
		if !ok {
			continue
		}
		forEachFrontend(st, sp, func(dst netip.AddrPort) { out[frontKey{proto, dst}] = struct{}{} })
	}
	return out
}

// Repaired hands over a State whose rules a repair has just restored: the
// entries of its frontends made without DNAT meanwhile are deleted on the
// cleaner's goroutine. It does not wait.
func (c *Cleaner) Repaired(st *model.State) {
	fronts := frontendsOf(st)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	for k := range fronts {
		c.pending.unnatted[k] = struct{}{}
	}
	c.handed++
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// unnattedQuery selects one family's entries without DNAT (the kernel
// filters on status from Linux 6.3; older kernels send every entry, and
// each is judged by unnatted either way).
func unnattedQuery(family uint8) Query {
	return Query{Family: family, StatusMask: ipsDstNAT, StatusValue: 0}
}

// unnatted reports whether fl is a flow to one of fronts that was never
// DNATed.
func unnatted(fl *Flow, fronts map[frontKey]struct{}) bool {
	if fl.Status&ipsDstNAT != 0 {
		return false
	}
	_, ok := fronts[frontKey{fl.Proto, unmap(fl.OrigDst)}]
	return ok
}

// hasUnnatted reports whether fronts holds a frontend of family.
func hasUnnatted(fronts map[frontKey]struct{}, family uint8) bool {
	for k := range fronts {
		if k.dst.Addr().Is4() == (family == unix.AF_INET) {
			return true
		}
	}
	return false
}
