package proxier

import (
	"net/netip"
	"slices"

	v1 "k8s.io/api/core/v1"

	"github.com/nftproxy/nftproxy/proxier/conntrack"
	"github.com/nftproxy/nftproxy/proxier/model"
)

// ConntrackCleaner deletes UDP conntrack entries that point at endpoints a
// Service no longer sends to, and after a repair the entries made while
// our rules were broken; *conntrack.Cleaner implements it.
type ConntrackCleaner interface {
	// Programmed hands over the index of a State whose rules are in the
	// kernel. It must not block: the cleanup runs elsewhere.
	Programmed(cur *conntrack.Index)
	// Repaired hands over a State whose rules a sync has just restored
	// after another process changed them: flows to its Service addresses
	// that were never DNATed started meanwhile and are deleted. It must
	// not block.
	Repaired(st *model.State)
}

// udpState remembers what the last hand-over depended on.
type udpState struct {
	ports map[*model.ServicePort]bool
	// What else decides which endpoints are programmed, and where
	// NodePorts are served.
	nodeName, nodeZone string
	nodePortIPs        []netip.Addr
	noIPv6             bool
	handed             bool
}

// cleanConntrack runs after a successful sync. It hands the cleaner a new
// index only when a UDP service port changed (ServicePorts are immutable,
// so a changed one is a new pointer) or the node's name, zone or NodePort
// addresses did.
func (p *Proxier) cleanConntrack(st *model.State) {
	if p.cfg.Conntrack == nil {
		return
	}
	next := udpState{ports: map[*model.ServicePort]bool{}, nodeName: st.NodeName, nodeZone: st.NodeZone,
		nodePortIPs: st.NodePortIPs, noIPv6: st.NoIPv6, handed: true}
	for _, sp := range st.Services {
		if sp.Protocol == v1.ProtocolUDP {
			next.ports[sp] = true
		}
	}
	if p.udp.handed && sameKeys(next.ports, p.udp.ports) && next.nodeName == p.udp.nodeName &&
		next.nodeZone == p.udp.nodeZone && slices.Equal(next.nodePortIPs, p.udp.nodePortIPs) && next.noIPv6 == p.udp.noIPv6 {
		return
	}
	p.cfg.Conntrack.Programmed(conntrack.NewIndex(st))
	p.udp = next
}

func sameKeys(a, b map[*model.ServicePort]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}
