package nftrules

import (
	"github.com/nftproxy/nftproxy/nftrules/nft"
	"net/netip"
	"strconv"
	"time"

	"github.com/nftproxy/nftproxy/proxier/model"
)

// defaultAffinityTimeout is kube-proxy's (and the API's) default for
// sessionAffinityConfig.clientIP.timeoutSeconds.
const defaultAffinityTimeout = 10800 * time.Second

// affinity builds the per-endpoint objects of a service port with
// sessionAffinity ClientIP. Upstream's layout, used only where the feature
// needs it: for each endpoint a dynamic set of the clients it served and a
// chain that refreshes the set and DNATs; for each range of endpoints a
// chain that sends a known client back to its endpoint and picks one at
// random otherwise.
type affinity struct {
	fr      *fragment
	sp      *model.ServicePort
	proto   nft.Protocol
	base    uint32
	timeout time.Duration
	// endpoint chains built so far, by endpoint: the same endpoint may be in
	// the cluster-wide and the local range.
	built map[netip.AddrPort]bool
}

func newAffinity(fr *fragment, sp *model.ServicePort, proto nft.Protocol, base uint32) *affinity {
	timeout := time.Duration(sp.AffinityTimeoutSeconds) * time.Second
	if timeout <= 0 {
		timeout = defaultAffinityTimeout
	}
	return &affinity{fr: fr, sp: sp, proto: proto, base: base, timeout: timeout, built: map[netip.AddrPort]bool{}}
}

// endpoint adds endpoint ep at index off of the service port's block.
func (a *affinity) endpoint(ep model.Endpoint, off uint32) {
	to := ep.AddrPort()
	sep := EndpointChainName(a.sp.Name, to)
	a.fr.put(EndpointChainsMapName(a.sp.ID), nft.Element{Key: []nft.Value{nft.NumValue(a.base + off)}, Verdict: &nft.Verdict{Kind: nft.Goto, Chain: sep}})
	if a.built[to] {
		return
	}
	a.built[to] = true
	set := AffinitySetName(a.sp.Name, to, a.timeout)
	a.fr.sets = append(a.fr.sets, &nft.Set{Name: set, Key: []nft.Datatype{nft.AddrType(nft.FamilyOf(ep.Addr))}, Dynamic: true, Timeout: a.timeout})
	c := a.fr.chain(sep)
	c.Add(nft.UpdateSourceSet{Set: set})
	c.Add(nft.MatchL4Proto{Proto: a.proto}, nft.DNATTo{To: to})
}

// dispatch returns the statements that send traffic to the endpoints at
// [off, off+len(eps)) of the block: a goto to that range's chain, which
// honours affinity and otherwise picks at random.
func (a *affinity) dispatch(eps []model.Endpoint, off uint32) []nft.Stmt {
	name := chainName("sva", a.sp.Name.String()+"/"+strconv.Itoa(int(off)))
	c := a.fr.chain(name)
	if len(c.Rules) == 0 {
		for _, ep := range eps {
			c.Add(nft.SetLookup{Fields: []nft.Field{nft.FieldSaddr}, Set: AffinitySetName(a.sp.Name, ep.AddrPort(), a.timeout)},
				nft.GotoChain(EndpointChainName(a.sp.Name, ep.AddrPort())))
		}
		c.Add(nft.NumgenVmap{Count: uint32(len(eps)), Offset: a.base + off, Map: EndpointChainsMapName(a.sp.ID)})
	}
	return []nft.Stmt{nft.GotoChain(name)}
}

func newEndpointChainsMap(name string) *nft.Set {
	return &nft.Set{Name: name, Key: []nft.Datatype{nft.TypeIndex}, Verdict: true}
}
