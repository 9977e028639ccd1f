package conntrack

import (
	"net/netip"

	"golang.org/x/sys/unix"
)

// work is what one cleanup looks for: per family, the reply sources and
// original destinations whose flows may have become stale, and the
// frontends that are gone with their former endpoints.
type work struct {
	fams    [2]famWork // IPv4, IPv6
	removed *Index
	// unnatted are the frontends a repair restored (Repaired).
	unnatted map[frontKey]struct{}
}

// famWork is one family's share of a cleanup.
type famWork struct {
	// replySrcs are endpoints that lost their place behind a frontend
	// that keeps serving (or that is gone): their flows through it are
	// stale.
	replySrcs map[netip.AddrPort]struct{}
	// dsts are frontends all of whose flows must be judged: new ones
	// (flows may predate the rules) and ones that just got their first
	// endpoint (flows were never DNATed).
	dsts map[netip.AddrPort]struct{}
}

func newWork() work {
	w := work{removed: newEmptyIndex(), unnatted: map[frontKey]struct{}{}}
	for i := range w.fams {
		w.fams[i] = famWork{replySrcs: map[netip.AddrPort]struct{}{}, dsts: map[netip.AddrPort]struct{}{}}
	}
	return w
}

func famIndex(a netip.Addr) int {
	if a.Is4() {
		return 0
	}
	return 1
}

func (w *work) empty() bool {
	return w.fams[0].empty() && w.fams[1].empty() && len(w.unnatted) == 0
}

func (f famWork) empty() bool { return len(f.replySrcs) == 0 && len(f.dsts) == 0 }

// plan returns the work the change from prev to cur needs (prev nil: the
// first cleanup, every frontend is new).
func plan(cur, prev *Index) work {
	w := newWork()
	if prev == nil {
		prev = newEmptyIndex()
	}
	compare := func(dst netip.AddrPort, live liveSet) {
		old, had := prev.lookup(dst)
		switch {
		case !had || (len(old) == 0 && len(live) > 0):
			w.fams[famIndex(dst.Addr())].dsts[dst] = struct{}{}
		default:
			for ep := range old {
				if _, ok := live[ep]; !ok {
					w.fams[famIndex(ep.Addr())].replySrcs[ep] = struct{}{}
				}
			}
		}
	}
	gone := func(dst netip.AddrPort, old liveSet) {
		for ep := range old {
			w.fams[famIndex(ep.Addr())].replySrcs[ep] = struct{}{}
		}
	}
	for dst, live := range cur.frontends {
		compare(dst, live)
	}
	forEachNodePort(cur, compare)
	for dst, old := range prev.frontends {
		if _, ok := cur.lookup(dst); !ok {
			w.removed.frontends[dst] = old
			gone(dst, old)
		}
	}
	forEachNodePort(prev, func(dst netip.AddrPort, old liveSet) {
		if _, ok := cur.lookup(dst); !ok {
			w.removed.nodePortIPs[dst.Addr()] = true
			w.removed.nodePorts[nodePortKey{dst.Addr().Is6(), dst.Port()}] = old
			gone(dst, old)
		}
	})
	return w
}

// forEachNodePort calls fn for every NodePort frontend of ix: each NodePort
// on each NodePort address of its family.
func forEachNodePort(ix *Index, fn func(dst netip.AddrPort, live liveSet)) {
	for ip := range ix.nodePortIPs {
		for k, live := range ix.nodePorts {
			if k.v6 == ip.Is6() {
				fn(netip.AddrPortFrom(ip, k.port), live)
			}
		}
	}
}

// merge adds o to w (work not done yet, and work that failed).
func (w *work) merge(o work) {
	for i := range w.fams {
		for k := range o.fams[i].replySrcs {
			w.fams[i].replySrcs[k] = struct{}{}
		}
		for k := range o.fams[i].dsts {
			w.fams[i].dsts[k] = struct{}{}
		}
	}
	for k, v := range o.removed.frontends {
		w.removed.frontends[k] = v
	}
	for k, v := range o.removed.nodePorts {
		w.removed.nodePorts[k] = v
	}
	for k := range o.removed.nodePortIPs {
		w.removed.nodePortIPs[k] = true
	}
	for k := range o.unnatted {
		w.unnatted[k] = struct{}{}
	}
}

// query is the kernel filter of one family's walk. The kernel takes one
// filter per dump and walks the whole table for each, so one dump must
// cover all of f: it filters as narrowly as that allows, and the entries
// it returns are judged again by Index.Stale.
//
//   - Only endpoints to look for: DNATed UDP flows, from that endpoint
//     (address and port) when there is one, else from their common port.
//   - Only frontends to judge: UDP flows to that frontend when there is
//     one, else to their common port.
//   - Both: UDP flows.
//
// IPv6 addresses are never sent: the kernel's IPv6 address comparison in
// dump filters is inverted (it returns the entries that do NOT match;
// seen on Linux 6.18, ctnetlink_filter_match_tuple uses !ipv6_addr_cmp),
// which would hide exactly the entries we look for.
func (f famWork) query(family uint8) Query {
	q := Query{Family: family, Proto: unix.IPPROTO_UDP}
	switch {
	case len(f.dsts) == 0:
		q.StatusMask, q.StatusValue = ipsDstNAT, ipsDstNAT
		q.ReplySrc, q.ReplySrcPort = common(f.replySrcs, family)
	case len(f.replySrcs) == 0:
		q.OrigDst, q.OrigDstPort = common(f.dsts, family)
	}
	return q
}

// common returns the address all of set share (invalid if they differ, or
// for IPv6) and the port they share (0 if they differ).
func common(set map[netip.AddrPort]struct{}, family uint8) (netip.Addr, uint16) {
	var ip netip.Addr
	var port uint16
	first, sameIP, samePort := true, true, true
	for a := range set {
		if first {
			ip, port, first = a.Addr(), a.Port(), false
			continue
		}
		sameIP = sameIP && a.Addr() == ip
		samePort = samePort && a.Port() == port
	}
	if !sameIP || family != unix.AF_INET {
		ip = netip.Addr{}
	}
	if !samePort {
		port = 0
	}
	return ip, port
}
