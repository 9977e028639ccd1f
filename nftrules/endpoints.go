package nftrules

import (
	"github.com/nftproxy/nftproxy/proxier/model"
)

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
