package proxier

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"

	"github.com/nftproxy/nftproxy/nftrules"
	"github.com/nftproxy/nftproxy/nftrules/nft"
	"github.com/nftproxy/nftproxy/proxier/model"
)

// checkEndpointLimits finds the service ports of st with more usable
// endpoints in a family than the ruleset has room for
// (nftrules.MaxEndpoints per service port and family; the rest are not
// programmed), reports each one whose count changed (log line and a
// TooManyEndpoints Warning Event on the Service) and returns how many
// endpoints are left out in all (a metric). Only service ports with more
// than MaxEndpoints/2 endpoints are looked at, so it costs little in the
// common case.
//
// With st.Delta from the State checked last, only the changed Services are
// looked at: the others' findings stand.
func (p *Proxier) checkEndpointLimits(st *model.State) int {
	over := map[model.ServicePortName]overLimit{}
	ports := st.All()
	if st.Delta != nil && p.limitsChecked != 0 && st.Delta.Since == p.limitsChecked {
		changed := map[types.NamespacedName]bool{}
		var changedPorts []*model.ServicePort
		for _, k := range st.Delta.Changed {
			changed[k] = true
			changedPorts = append(changedPorts, st.PortsOf(k)...)
		}
		ports = slices.Values(changedPorts)
		for name, o := range p.overLimit {
			if !changed[name.NamespacedName] {
				over[name] = o
			}
		}
	}
	p.limitsChecked = st.Gen
	for sp := range ports {
		dropped := nftrules.EndpointsOverLimit(st, sp)
		if len(dropped) == 0 {
			continue
		}
		var parts []string
		n := 0
		for _, f := range slices.Sorted(maps.Keys(dropped)) {
			n += dropped[f]
			name := map[nft.Family]string{nft.IPv4: "IPv4", nft.IPv6: "IPv6"}[f]
			parts = append(parts, fmt.Sprintf("%d %s", dropped[f], name))
		}
		msg := fmt.Sprintf("port %s/%s: %s endpoint(s) not programmed: at most %d endpoints per service port and family fit the ruleset",
			sp.Name.Port, sp.Name.Protocol, strings.Join(parts, " and "), nftrules.MaxEndpoints)
		over[sp.Name] = overLimit{msg: msg, dropped: n}
		if p.overLimit[sp.Name].msg != msg {
			p.report([]model.Rejection{{Kind: "Service", Namespace: sp.Name.Namespace, Name: sp.Name.Name, Invalid: true,
				Reason: "TooManyEndpoints", Message: msg}})
		}
	}
	total := 0
	for _, o := range over {
		total += o.dropped
	}
	for name := range p.overLimit {
		if _, ok := over[name]; !ok {
			klog.InfoS("Service port back within the endpoint limit; all its endpoints are programmed", "servicePort", name.String())
		}
	}
	p.overLimit = over
	return total
}

// overLimit is what checkEndpointLimits found for one service port: the
// message reported and the number of endpoints left out.
type overLimit struct {
	msg     string
	dropped int
}
