package endpoints

import (
	"slices"

	"github.com/nftproxy/nftproxy/proxier/model"
)

// Cluster returns the endpoints cluster-wide traffic of a service port may
// go to from this node: those the topology hints give this node (all when
// the hints are not usable, see modeOf), and among them the usable ones.
// It reads sp.Endpoints; pass a copy holding one family's endpoints to
// choose per family.
func Cluster(sp *model.ServicePort, node, zone string) []model.Endpoint {
	mode := modeOf(sp, node, zone)
	if mode == topologyNone {
		return Usable(sp.Endpoints)
	}
	var eps []model.Endpoint
	for _, ep := range sp.Endpoints {
		if availableForTopology(ep, mode, node, zone) {
			eps = append(eps, ep)
		}
	}
	return Usable(eps)
}

// Local returns the endpoints on this node that traffic under a Local
// traffic policy may go to: the usable ones among the local endpoints. The
// fallback to terminating endpoints is decided within the local set, as
// upstream does per policy. Topology hints do not apply.
func Local(eps []model.Endpoint, node string) []model.Endpoint {
	return Usable(OnNode(eps, node))
}

// Usable is the one definition of the endpoints a set of endpoints sends
// traffic to: the ready ones, else the serving and terminating ones. Like
// the other selections here it returns eps itself (capacity clipped:
// read-only) when nothing is left out, the common case, instead of a copy
// per sync.
func Usable(eps []model.Endpoint) []model.Endpoint {
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

// OnNode returns the endpoints running on the named node (nil when none
// does, without allocating).
func OnNode(eps []model.Endpoint, node string) []model.Endpoint {
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
