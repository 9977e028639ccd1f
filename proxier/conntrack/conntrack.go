// Package conntrack removes UDP conntrack entries that still point at
// endpoints a Service no longer sends to, and after a repair of our rules
// the entries that missed their DNAT.
//
// UDP has no connection end: a client that keeps sending to a ClusterIP
// keeps its conntrack entry, and with it the DNAT to the backend chosen
// first, even after that backend is gone. After a sync that changed UDP
// service ports, the entries whose original destination is a UDP Service
// frontend and whose reply source is not one of the endpoints the ruleset
// now DNATs that Service to are deleted, so the next packet is
// load-balanced again. This is upstream kube-proxy's rule
// (pkg/proxy/conntrack), with two differences:
//
//   - A NodePort frontend is the NodePort on one of the node's NodePort
//     addresses (st.NodePortIPs, the addresses the ruleset serves it on),
//     not the port alone: a masqueraded egress flow to some host's port
//     30053 is not a flow to NodePort 30053 and is never touched.
//   - "Endpoint" means an endpoint the ruleset programs
//     (nftrules.ProgrammedEndpoints: ready ones, serving-and-terminating
//     ones only when none is ready, topology and traffic policy applied),
//     where upstream keeps every serving endpoint. A flow to an endpoint
//     the ruleset stopped sending new flows to is moved too.
//
// Flows of a Service port that is gone are deleted when their reply source
// is one of its former endpoints. SCTP is left alone, as upstream does.
//
// After a repair of our rules, flows of any protocol to a Service frontend
// that were never DNATed are deleted too (Cleaner.Repaired, repair.go).
//
// Finding the entries means walking the kernel's conntrack table, which
// costs about 0.4 s of kernel time per million entries however narrow the
// filter, so the Cleaner does it on its own goroutine, off the sync path;
// see Cleaner.
package conntrack

import (
	"net/netip"

	v1 "k8s.io/api/core/v1"

	"github.com/nftproxy/nftproxy/nftrules"
	"github.com/nftproxy/nftproxy/nftrules/nft"
	"github.com/nftproxy/nftproxy/proxier/model"
)

// liveSet holds the endpoints a frontend's flows may be DNATed to.
type liveSet map[netip.AddrPort]struct{}

// nodePortKey is a NodePort of one family.
type nodePortKey struct {
	v6   bool
	port uint16
}

// Index maps the UDP Service frontends of one State to the endpoints their
// flows may reply from. It is built from a State and is pure data.
type Index struct {
	// frontends holds ClusterIPs, external and load-balancer IPs with
	// their port.
	frontends map[netip.AddrPort]liveSet
	// nodePorts holds NodePorts, served on nodePortIPs.
	nodePorts   map[nodePortKey]liveSet
	nodePortIPs map[netip.Addr]bool
}

func newEmptyIndex() *Index {
	return &Index{frontends: map[netip.AddrPort]liveSet{}, nodePorts: map[nodePortKey]liveSet{}, nodePortIPs: map[netip.Addr]bool{}}
}

// NewIndex indexes the UDP service ports of st as the ruleset built from
// st programs them: frontends only in the families that have a ClusterIP
// (and that the node programs), and for each the endpoints
// nftrules.ProgrammedEndpoints returns.
func NewIndex(st *model.State) *Index {
	ix := newEmptyIndex()
	for _, ip := range st.NodePortIPs {
		ix.nodePortIPs[ip.Unmap()] = true
	}
	for sp := range st.All() {
		if sp.Protocol != v1.ProtocolUDP {
			continue
		}
		live := liveSet{}
		for _, ep := range nftrules.ProgrammedEndpoints(st, sp) {
			live[netip.AddrPortFrom(ep.Addr.Unmap(), ep.Port)] = struct{}{}
		}
		forEachFrontend(st, sp, func(dst netip.AddrPort) { ix.frontends[dst] = live })
		for _, f := range nftrules.FamiliesOf(st) {
			if sp.NodePort != 0 && hasFamily(sp.ClusterIPs, f) {
				ix.nodePorts[nodePortKey{f == nft.IPv6, sp.NodePort}] = live
			}
		}
	}
	return ix
}

// forEachFrontend calls fn for each ClusterIP, external and load-balancer
// IP of sp with its port, in the families the ruleset programs sp in: those
// of its ClusterIPs that the node programs.
func forEachFrontend(st *model.State, sp *model.ServicePort, fn func(dst netip.AddrPort)) {
	for _, f := range nftrules.FamiliesOf(st) {
		if !hasFamily(sp.ClusterIPs, f) {
			continue // the Service is not programmed in f
		}
		for _, group := range [][]netip.Addr{sp.ClusterIPs, sp.ExternalIPs, sp.LoadBalancerIPs} {
			for _, ip := range group {
				if nft.FamilyOf(ip) == f {
					fn(netip.AddrPortFrom(ip.Unmap(), sp.Port))
				}
			}
		}
	}
}

func hasFamily(ips []netip.Addr, f nft.Family) bool {
	for _, ip := range ips {
		if nft.FamilyOf(ip) == f {
			return true
		}
	}
	return false
}

// lookup returns the endpoints of the frontend dst, if it is one.
func (ix *Index) lookup(dst netip.AddrPort) (liveSet, bool) {
	if live, ok := ix.frontends[dst]; ok {
		return live, true
	}
	if !ix.nodePortIPs[dst.Addr()] {
		return nil, false
	}
	live, ok := ix.nodePorts[nodePortKey{dst.Addr().Is6(), dst.Port()}]
	return live, ok
}

// Stale reports whether a UDP flow (original destination dst, reply source
// replySrc) must be deleted: its destination is a frontend of cur and the
// reply comes from elsewhere than that frontend's endpoints (moved or
// removed endpoints, and flows that were never DNATed because they predate
// the Service's rules or its first endpoint); or its destination is a
// frontend only removed had (a Service port that is gone) and the reply
// comes from one of that frontend's former endpoints.
func (ix *Index) Stale(dst, replySrc netip.AddrPort, removed *Index) bool {
	dst, replySrc = unmap(dst), unmap(replySrc)
	if live, ok := ix.lookup(dst); ok {
		_, kept := live[replySrc]
		return !kept
	}
	if removed == nil {
		return false
	}
	live, ok := removed.lookup(dst)
	if !ok {
		return false
	}
	_, was := live[replySrc]
	return was
}

func unmap(a netip.AddrPort) netip.AddrPort { return netip.AddrPortFrom(a.Addr().Unmap(), a.Port()) }
