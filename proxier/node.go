package proxier

import (
	"net/netip"
	"slices"

	v1 "k8s.io/api/core/v1"

	"github.com/nftproxy/nftproxy/proxier/model"
)

// LabelZone is the Node label topology hints are matched against.
const LabelZone = v1.LabelTopologyZone

// nodeInfo extracts what the model needs from this node's Node: its zone
// and its addresses. Like upstream, InternalIPs are used, falling back to
// ExternalIPs on nodes that have none; order is kept (primary first).
func nodeInfo(n *v1.Node) (zone string, ips []netip.Addr) {
	if n == nil {
		return "", nil
	}
	zone = n.Labels[LabelZone]
	for _, typ := range []v1.NodeAddressType{v1.NodeInternalIP, v1.NodeExternalIP} {
		for _, a := range n.Status.Addresses {
			if a.Type != typ {
				continue
			}
			ip, err := model.ParseIP(a.Address)
			if err != nil || slices.Contains(ips, ip) {
				continue
			}
			ips = append(ips, ip)
		}
		if len(ips) > 0 {
			break
		}
	}
	return zone, ips
}
