// Package conntrack removes UDP conntrack entries that still point at
// endpoints a Service no longer has.
//
// UDP has no connection end: a client that keeps sending to a ClusterIP
// keeps its conntrack entry, and with it the DNAT to the backend chosen
// first, even after that backend is gone. After each sync that changed UDP
// service ports, the entries whose original destination is a UDP Service
// address (ClusterIP, external or load-balancer IP, or a NodePort) and
// whose reply source is not a serving endpoint of that Service are deleted,
// so the next packet is load-balanced again. This is upstream kube-proxy's
// rule (pkg/proxy/conntrack).
package conntrack

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/nftproxy/nftproxy/proxier/model"
)

// Index maps UDP Service addresses to the endpoints their flows may reply
// from. It is built from a State and is pure data.
type Index struct {
	// byDst holds ClusterIPs, external and load-balancer IPs with a port.
	byDst map[netip.AddrPort]map[netip.AddrPort]bool
	// byNodePort holds NodePorts (any destination address of the node).
	byNodePort map[uint16]map[netip.AddrPort]bool
}

// NewIndex indexes the UDP service ports of st. Endpoints that are serving
// (ready, or serving while terminating) are live.
func NewIndex(st *model.State) *Index {
	ix := &Index{byDst: map[netip.AddrPort]map[netip.AddrPort]bool{}, byNodePort: map[uint16]map[netip.AddrPort]bool{}}
	for _, sp := range st.Services {
		if sp.Protocol != "UDP" {
			continue
		}
		live := map[netip.AddrPort]bool{}
		for _, ep := range sp.Endpoints {
			if ep.Ready || ep.Serving {
				live[ep.AddrPort()] = true
			}
		}
		for _, group := range [][]netip.Addr{sp.ClusterIPs, sp.ExternalIPs, sp.LoadBalancerIPs} {
			for _, ip := range group {
				ix.byDst[netip.AddrPortFrom(ip, sp.Port)] = live
			}
		}
		if sp.NodePort != 0 {
			ix.byNodePort[sp.NodePort] = live
		}
	}
	return ix
}

// Stale reports whether a UDP flow (original destination dst, reply source
// replySrc) points at an endpoint its Service no longer has. Flows to
// addresses that are not (or no longer) UDP Services are judged by removed:
// the index of the previous State, so that the flows of a deleted Service
// are removed too.
func (ix *Index) Stale(dst, replySrc netip.AddrPort, removed *Index) bool {
	if live, ok := ix.byDst[dst]; ok {
		return !live[replySrc]
	}
	if live, ok := ix.byNodePort[dst.Port()]; ok {
		return !live[replySrc]
	}
	if removed == nil {
		return false
	}
	_, wasService := removed.byDst[dst]
	_, wasNodePort := removed.byNodePort[dst.Port()]
	return wasService || wasNodePort
}

// Cleaner deletes stale entries from one network namespace's conntrack table.
type Cleaner struct {
	handle *netlink.Handle
}

// NewCleaner opens a netlink handle in the namespace of nsFd (0: the
// current namespace).
func NewCleaner(nsFd int) (*Cleaner, error) {
	var h *netlink.Handle
	var err error
	if nsFd != 0 {
		h, err = netlink.NewHandleAt(netns.NsHandle(nsFd), unix.NETLINK_NETFILTER)
	} else {
		h, err = netlink.NewHandle(unix.NETLINK_NETFILTER)
	}
	if err != nil {
		return nil, fmt.Errorf("conntrack: open netlink handle: %w", err)
	}
	return &Cleaner{handle: h}, nil
}

// Clean deletes the UDP entries that cur says are stale (with prev, the
// previous State's index, for Services that are gone) and returns how many
// it deleted.
func (c *Cleaner) Clean(cur, prev *Index) (int, error) {
	f := filter{cur: cur, prev: prev}
	var total uint
	for _, fam := range []netlink.InetFamily{unix.AF_INET, unix.AF_INET6} {
		n, err := c.handle.ConntrackDeleteFilters(netlink.ConntrackTable, fam, f)
		total += n
		if err != nil {
			return int(total), fmt.Errorf("conntrack: delete stale UDP entries: %w", err)
		}
	}
	return int(total), nil
}

// Close releases the netlink handle.
func (c *Cleaner) Close() { c.handle.Close() }

type filter struct{ cur, prev *Index }

func (f filter) MatchConntrackFlow(flow *netlink.ConntrackFlow) bool {
	if flow.Forward.Protocol != unix.IPPROTO_UDP {
		return false
	}
	dst, ok1 := addrPort(flow.Forward.DstIP, flow.Forward.DstPort)
	src, ok2 := addrPort(flow.Reverse.SrcIP, flow.Reverse.SrcPort)
	return ok1 && ok2 && f.cur.Stale(dst, src, f.prev)
}

func addrPort(ip net.IP, port uint16) (netip.AddrPort, bool) {
	a, ok := netip.AddrFromSlice(ip)
	return netip.AddrPortFrom(a.Unmap(), port), ok
}
