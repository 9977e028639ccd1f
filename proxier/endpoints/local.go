package endpoints

import "github.com/nftproxy/nftproxy/proxier/model"

// LocalReady counts the ready endpoints of a Service's ports on this node,
// as upstream's health check node port reports them: distinct endpoint
// addresses, counted per family (a dual-stack pod has one address in each;
// upstream's per-family proxiers each report their own count), the larger
// count wins. Terminating endpoints do not count: a node whose last local
// endpoint is going away fails its health check, so load balancers stop
// sending new connections before the pod is gone.
func LocalReady(node string, ports []*model.ServicePort) int {
	v4, v6 := map[string]bool{}, map[string]bool{}
	for _, sp := range ports {
		for _, ep := range sp.Endpoints {
			if !ep.Ready || !ep.IsLocal(node) {
				continue
			}
			if ep.Addr.Is4() || ep.Addr.Is4In6() {
				v4[ep.Addr.String()] = true
			} else {
				v6[ep.Addr.String()] = true
			}
		}
	}
	return max(len(v4), len(v6))
}
