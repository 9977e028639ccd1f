package proxier

import (
	v1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"

	"github.com/nftproxy/nftproxy/proxier/conntrack"
	"github.com/nftproxy/nftproxy/proxier/model"
)

// ConntrackCleaner deletes UDP conntrack entries that point at endpoints a
// Service no longer has; *conntrack.Cleaner implements it.
type ConntrackCleaner interface {
	Clean(cur, prev *conntrack.Index) (int, error)
}

// udpState remembers the UDP service ports of the last programmed State.
type udpState struct {
	ports map[*model.ServicePort]bool
	index *conntrack.Index
}

// cleanConntrack runs after a successful sync. It does nothing unless a UDP
// service port changed (ServicePorts are immutable, so a changed one is a
// new pointer); it returns how many entries it deleted.
func (p *Proxier) cleanConntrack(st *model.State) int {
	if p.cfg.Conntrack == nil {
		return 0
	}
	ports := map[*model.ServicePort]bool{}
	for _, sp := range st.Services {
		if sp.Protocol == v1.ProtocolUDP {
			ports[sp] = true
		}
	}
	if p.udp.ports != nil && sameKeys(ports, p.udp.ports) {
		return 0
	}
	cur := conntrack.NewIndex(st)
	n, err := p.cfg.Conntrack.Clean(cur, p.udp.index)
	if err != nil {
		// The rules are right; stale flows age out on their own. Retry at
		// the next change.
		klog.ErrorS(err, "Deleting stale UDP conntrack entries")
		return n
	}
	p.udp = udpState{ports: ports, index: cur}
	klog.V(2).InfoS("Deleted stale UDP conntrack entries", "entries", n)
	return n
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
