package nftrules

import (
	"slices"

	"github.com/nftproxy/nftproxy/proxier/model"
)

// ClusterEndpoints returns the endpoints cluster-wide traffic of a service
// port may go to, as kube-proxy chooses them: those the topology hints give
// this node (all when hints are not usable, see topologyModeOf), and among
// them the ready ones; if there are none, the serving and terminating ones
// (graceful termination); never endpoints that are neither.
func ClusterEndpoints(st *model.State, sp *model.ServicePort) []model.Endpoint {
	mode := topologyModeOf(sp, st.NodeName, st.NodeZone)
	if mode == topologyNone {
		return usable(sp.Endpoints)
	}
	var eps []model.Endpoint
	for _, ep := range sp.Endpoints {
		if availableForTopology(ep, mode, st.NodeName, st.NodeZone) {
			eps = append(eps, ep)
		}
	}
	return usable(eps)
}

// usable returns the ready endpoints, else the serving and terminating
// ones. Like the other selections here it returns eps itself (capacity
// clipped: read-only) when nothing is left out, the common case, instead
// of a copy per Build.
func usable(eps []model.Endpoint) []model.Endpoint {
	if !slices.ContainsFunc(eps, func(ep model.Endpoint) bool { return !ep.Ready }) {
		return eps[:len(eps):len(eps)]
	}
	var ready, terminating []model.Endpoint
	for _, ep := range eps {
		switch {
		case ep.Ready:
			ready = append(ready, ep)
		case ep.Serving && ep.Terminating:
			terminating = append(terminating, ep)
		}
	}
	if len(ready) > 0 {
		return ready
	}
	return terminating
}

// ProgrammedEndpoints returns the endpoints the ruleset of st DNATs sp's
// traffic to, over the families it programs: what serviceFragment puts in
// the service port's endpoint block (cluster-wide ones when some chain
// uses them, local ones under a Local policy, both capped to the block).
// None for a service port that is rejected (no usable endpoint) or not
// programmed in any family. An endpoint may appear twice (cluster-wide and
// local).
func ProgrammedEndpoints(st *model.State, sp *model.ServicePort) []model.Endpoint {
	if _, ok := ProtocolOf(sp.Protocol); !ok || sp.ID > MaxServicePortID {
		return nil
	}
	var out []model.Endpoint
	for _, f := range FamiliesOf(st) {
		if len(addrsOfFamily(sp.ClusterIPs, f)) == 0 {
			continue
		}
		sel := selectEndpoints(st, sp, f, externalIn(sp, f))
		if len(sel.cluster) == 0 {
			continue
		}
		if sel.needCluster {
			out = append(out, sel.cluster...)
		}
		out = append(out, sel.local...)
	}
	return out
}

// LocalEndpoints returns the endpoints on this node that traffic under a
// Local traffic policy may go to: the ready local ones; if there are none,
// the serving and terminating local ones. The fallback is decided within
// the local set, as upstream does per policy. Topology hints do not apply.
func LocalEndpoints(st *model.State, sp *model.ServicePort) []model.Endpoint {
	return usable(onNode(sp.Endpoints, st.NodeName))
}

// onNode returns the endpoints running on the named node.
func onNode(eps []model.Endpoint, node string) []model.Endpoint {
	if !slices.ContainsFunc(eps, func(ep model.Endpoint) bool { return ep.IsLocal(node) }) {
		return nil
	}
	var out []model.Endpoint
	for _, ep := range eps {
		if ep.IsLocal(node) {
			out = append(out, ep)
		}
	}
	return out
}

// LocalReadyEndpoints counts the ready endpoints of a Service's ports on
// this node, as upstream's health check node port reports them: distinct
// endpoint addresses, counted per family (a dual-stack pod has one address
// in each; upstream's per-family proxiers each report their own count), the
// larger count wins. Terminating endpoints do not count: a node whose last
// local endpoint is going away fails its health check.
func LocalReadyEndpoints(node string, ports []*model.ServicePort) int {
	seen := map[Family]map[string]bool{IPv4: {}, IPv6: {}}
	for _, sp := range ports {
		for _, ep := range sp.Endpoints {
			if ep.Ready && ep.IsLocal(node) {
				seen[FamilyOf(ep.Addr)][ep.Addr.String()] = true
			}
		}
	}
	return max(len(seen[IPv4]), len(seen[IPv6]))
}
