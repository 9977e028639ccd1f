package metrics

import (
	"github.com/nftproxy/nftproxy/proxier/endpoints"
	"github.com/nftproxy/nftproxy/proxier/model"
)

// noLocalEndpoints counts, as kube-proxy does for
// kubeproxy_sync_proxy_rules_no_local_endpoints_total, the service ports
// whose internal (resp. external) traffic policy is Local and which have no
// usable endpoint on this node. The external policy only counts for
// externally reachable ports (NodePort, external IPs, load balancer IPs).
func noLocalEndpoints(st *model.State) (internal, external int) {
	for _, sp := range st.Services {
		if !sp.InternalPolicyLocal && !sp.ExternalPolicyLocal {
			continue
		}
		if len(endpoints.Local(sp.Endpoints, st.NodeName)) > 0 {
			continue
		}
		if sp.InternalPolicyLocal {
			internal++
		}
		if sp.ExternalPolicyLocal && externallyReachable(sp) {
			external++
		}
	}
	return internal, external
}

func externallyReachable(sp *model.ServicePort) bool {
	return sp.NodePort != 0 || len(sp.ExternalIPs) > 0 || len(sp.LoadBalancerIPs) > 0
}
