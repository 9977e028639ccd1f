package proxier

import (
	"net/netip"
	"slices"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

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
	// ports are the UDP service ports per Service, of the State with
	// Gen gen (0: not numbered).
	ports map[types.NamespacedName][]*model.ServicePort
	gen   uint64
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
// addresses did. With st.Delta from the State it saw last, it looks at
// the changed Services only: an endpoint change costs the same among 1,000
// or 50,000 Services.
func (p *Proxier) cleanConntrack(st *model.State) {
	if p.cfg.Conntrack == nil {
		return
	}
	next := udpState{gen: st.Gen, nodeName: st.NodeName, nodeZone: st.NodeZone,
		nodePortIPs: st.NodePortIPs, noIPv6: st.NoIPv6, handed: true}
	sameNode := p.udp.handed && next.nodeName == p.udp.nodeName && next.nodeZone == p.udp.nodeZone &&
		slices.Equal(next.nodePortIPs, p.udp.nodePortIPs) && next.noIPv6 == p.udp.noIPv6
	var changed bool
	if sameNode && st.Delta != nil && p.udp.gen != 0 && st.Delta.Since == p.udp.gen {
		next.ports = p.udp.ports
		for _, k := range st.Delta.Changed {
			udp := udpPorts(st.PortsOf(k))
			if !slices.Equal(udp, next.ports[k]) {
				changed = true
			}
			if len(udp) == 0 {
				delete(next.ports, k)
			} else {
				next.ports[k] = udp
			}
		}
	} else {
		next.ports = map[types.NamespacedName][]*model.ServicePort{}
		for sp := range st.All() {
			if sp.Protocol == v1.ProtocolUDP {
				k := sp.Name.NamespacedName
				next.ports[k] = append(next.ports[k], sp)
			}
		}
		changed = !sameNode || !samePorts(next.ports, p.udp.ports)
	}
	p.udp = next
	if changed {
		p.cfg.Conntrack.Programmed(conntrack.NewIndex(st))
	}
}

// udpPorts returns the UDP ports among ports (nil if none).
func udpPorts(ports []*model.ServicePort) []*model.ServicePort {
	var out []*model.ServicePort
	for _, sp := range ports {
		if sp.Protocol == v1.ProtocolUDP {
			out = append(out, sp)
		}
	}
	return out
}

func samePorts(a, b map[types.NamespacedName][]*model.ServicePort) bool {
	if len(a) != len(b) {
		return false
	}
	for k, ports := range a {
		if !slices.Equal(ports, b[k]) {
			return false
		}
	}
	return true
}
