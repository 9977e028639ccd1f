package metrics

import (
	"sync"

	"k8s.io/apimachinery/pkg/types"

	"github.com/nftproxy/nftproxy/proxier/endpoints"
	"github.com/nftproxy/nftproxy/proxier/model"
)

// localCounts keeps noLocalEndpoints' counts per Service between syncs, so
// that a State whose Delta starts from the State counted last costs the
// changed Services only, not every service port.
type localCounts struct {
	mu    sync.Mutex
	gen   uint64 // the Gen of the State counted last
	bySvc map[types.NamespacedName][2]int
	total [2]int // internal, external
}

// update counts st and returns the totals.
func (c *localCounts) update(st *model.State) (internal, external int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	set := func(k types.NamespacedName, n [2]int) {
		old := c.bySvc[k]
		c.total[0] += n[0] - old[0]
		c.total[1] += n[1] - old[1]
		if n == ([2]int{}) {
			delete(c.bySvc, k)
		} else {
			c.bySvc[k] = n
		}
	}
	if st.Delta != nil && c.gen != 0 && st.Delta.Since == c.gen {
		for _, k := range st.Delta.Changed {
			i, e := noLocalEndpoints(st.PortsOf(k), st.NodeName)
			set(k, [2]int{i, e})
		}
	} else {
		c.bySvc, c.total = map[types.NamespacedName][2]int{}, [2]int{}
		for sp := range st.All() {
			k := sp.Name.NamespacedName
			i, e := noLocalEndpoints([]*model.ServicePort{sp}, st.NodeName)
			old := c.bySvc[k]
			set(k, [2]int{old[0] + i, old[1] + e})
		}
	}
	c.gen = st.Gen
	return c.total[0], c.total[1]
}

// noLocalEndpoints counts, as kube-proxy does for
// kubeproxy_sync_proxy_rules_no_local_endpoints_total, the service ports
// whose internal (resp. external) traffic policy is Local and which have no
// usable endpoint on this node. The external policy only counts for
// externally reachable ports (NodePort, external IPs, load balancer IPs).
func noLocalEndpoints(ports []*model.ServicePort, node string) (internal, external int) {
	for _, sp := range ports {
		if !sp.InternalPolicyLocal && !sp.ExternalPolicyLocal {
			continue
		}
		if len(endpoints.Local(sp.Endpoints, node)) > 0 {
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
