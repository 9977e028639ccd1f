package nftrules

import "github.com/nftproxy/nftproxy/proxier/model"

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

func usable(eps []model.Endpoint) []model.Endpoint {
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
