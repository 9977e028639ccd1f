package nftrules

import "github.com/nftproxy/nftproxy/proxier/model"

// ClusterEndpoints returns the endpoints ClusterIP traffic of a service port
// may go to, as kube-proxy chooses them: the ready endpoints; if there are
// none, the endpoints that are serving and terminating (graceful
// termination); never endpoints that are neither.
func ClusterEndpoints(st *model.State, sp *model.ServicePort) []model.Endpoint {
	return usable(sp.Endpoints)
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
