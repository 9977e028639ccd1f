package endpoints

import (
	"slices"

	"k8s.io/klog/v2"

	"github.com/nftproxy/nftproxy/proxier/model"
)

// topologyMode says which EndpointSlice hints to follow for cluster-wide
// traffic, as upstream kube-proxy decides (pkg/proxy/topology.go): the
// control plane sets hints for trafficDistribution PreferSameNode (forNodes)
// and PreferClose/PreferSameZone (forZones). Hints are used only when every
// ready endpoint has one of that kind and at least one names this node (or
// its zone); otherwise all endpoints are used.
type topologyMode int

const (
	topologyNone topologyMode = iota
	topologySameNode
	topologySameZone
)

func modeOf(sp *model.ServicePort, node, zone string) topologyMode {
	allNode, allZone := true, true
	forNode, forZone := false, false
	ready := 0
	for _, ep := range sp.Endpoints {
		if !ep.Ready {
			continue
		}
		ready++
		if len(ep.NodeHints()) == 0 {
			allNode = false
		} else if slices.Contains(ep.NodeHints(), node) {
			forNode = true
		}
		if len(ep.ZoneHints()) == 0 {
			allZone = false
		} else if slices.Contains(ep.ZoneHints(), zone) {
			forZone = true
		}
	}
	if ready == 0 {
		return topologyNone
	}
	if allNode && forNode {
		return topologySameNode
	}
	if allZone {
		if forZone {
			return topologySameZone
		}
		klog.V(4).InfoS("Ignoring zone hints: none for this node's zone", "servicePort", sp.Name.String(), "zone", zone)
	}
	return topologyNone
}

// availableForTopology reports whether an endpoint may take this node's
// cluster-wide traffic under mode.
func availableForTopology(ep model.Endpoint, mode topologyMode, node, zone string) bool {
	switch mode {
	case topologySameNode:
		return slices.Contains(ep.NodeHints(), node)
	case topologySameZone:
		return slices.Contains(ep.ZoneHints(), zone)
	}
	return true
}
