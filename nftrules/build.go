package nftrules

import (
	"net/netip"

	v1 "k8s.io/api/core/v1"

	"github.com/nftproxy/nftproxy/proxier/model"
)

// buildSkeleton adds the base chains, shared chains and shared sets.
func buildSkeleton(t *Table, st *model.State) {
	f := t.Family
	addr := AddrType(f)
	dispatchKey := []Datatype{addr, TypeInetProto, TypeInetService}
	dispatchFields := []Field{FieldDaddr, FieldL4Proto, FieldDport}

	t.Sets[SetServiceIPs] = &Set{Name: SetServiceIPs, Key: dispatchKey, Verdict: true}
	t.Sets[SetNoEndpointServices] = &Set{Name: SetNoEndpointServices, Key: dispatchKey, Verdict: true}
	t.Sets[SetHairpin] = &Set{Name: SetHairpin, Key: []Datatype{addr, addr}}
	t.Sets[SetClusterIPs] = &Set{Name: SetClusterIPs, Key: []Datatype{addr}}

	base := func(name string, typ ChainType, hook Hook, prio int) *Chain {
		c := t.Chain(name)
		c.Base = &BaseChain{Type: typ, Hook: hook, Priority: prio}
		return c
	}
	// Filter: reject new connections to Services without endpoints, for
	// forwarded traffic (from pods and other hosts) and local traffic.
	base(ChainFilterForward, FilterChain, Forward, 0).Add(MatchCtStateNew{}, JumpTo(ChainEndpointsCheck))
	base(ChainFilterOutput, FilterChain, Output, 0).Add(MatchCtStateNew{}, JumpTo(ChainEndpointsCheck))
	t.Chain(ChainEndpointsCheck).Add(VmapLookup{Fields: dispatchFields, Map: SetNoEndpointServices})
	rej := t.Chain(ChainReject)
	rej.Add(MatchL4Proto{Proto: TCP}, RejectTCPReset{})
	rej.Add(Reject{})

	// NAT: dispatch to service chains before routing; masquerade after.
	base(ChainNATPrerouting, NATChain, Prerouting, -100).Add(JumpTo(ChainServices))
	base(ChainNATOutput, NATChain, Output, -100).Add(JumpTo(ChainServices))
	services := t.Chain(ChainServices)
	if m := masqueradeMatch(st, f); m != nil {
		// One rule for all Services rather than one per service chain:
		// every rule is a kernel object to commit.
		services.Add(append(m, SetLookup{Fields: []Field{FieldDaddr}, Set: SetClusterIPs}, JumpTo(ChainMarkForMasquerade))...)
	}
	services.Add(VmapLookup{Fields: dispatchFields, Map: SetServiceIPs})
	t.Chain(ChainMarkForMasquerade).Add(SetMarkBits{Bits: MasqueradeBit})

	post := base(ChainNATPostrouting, NATChain, Postrouting, 100)
	post.Add(MatchCtStatusDNAT{}, SetLookup{Fields: []Field{FieldSaddr, FieldDaddr}, Set: SetHairpin}, JumpTo(ChainMarkForMasquerade))
	post.Add(MatchMarkUnset{Bits: MasqueradeBit}, ReturnStmt)
	post.Add(ClearMarkBits{Bits: MasqueradeBit})
	post.Add(Masquerade{})
}

// fragment is what one service port contributes to one family's table:
// its chains and, per set, its elements. Fragments are immutable once built.
type fragment struct {
	chains   []*Chain
	elements map[string][]Element
}

func (fr *fragment) put(set string, e Element) {
	if fr.elements == nil {
		fr.elements = map[string][]Element{}
	}
	fr.elements[set] = append(fr.elements[set], e)
}

// serviceFragment builds one service port's fragment for family f (nil when
// the service port has nothing in that family).
func serviceFragment(st *model.State, sp *model.ServicePort, f Family) *fragment {
	proto, ok := ProtocolOf(sp.Protocol)
	if !ok || sp.ID > MaxServicePortID {
		// The proxier never hands out such IDs; a wrapped offset would
		// overwrite another service port's endpoints.
		return nil
	}
	var clusterIPs []netip.Addr
	for _, ip := range sp.ClusterIPs {
		if FamilyOf(ip) == f {
			clusterIPs = append(clusterIPs, ip)
		}
	}
	if len(clusterIPs) == 0 {
		return nil
	}
	eps := endpointsOfFamily(ClusterEndpoints(st, sp), f)
	if len(eps) > MaxEndpoints {
		eps = eps[:MaxEndpoints]
	}

	fr := &fragment{}
	if len(eps) == 0 {
		for _, ip := range clusterIPs {
			fr.put(SetNoEndpointServices, dispatchElement(ip, proto, sp.Port, GotoChain(ChainReject)))
		}
		return fr
	}

	chain := &Chain{Name: ServiceChainName(sp.Name)}
	fr.chains = append(fr.chains, chain)
	for _, ip := range clusterIPs {
		fr.put(SetServiceIPs, dispatchElement(ip, proto, sp.Port, GotoChain(chain.Name)))
	}
	for _, ip := range clusterIPs {
		fr.put(SetClusterIPs, Element{Key: []Value{AddrValue(ip)}})
	}
	base := sp.ID << IndexBits
	epMap := EndpointMapName(proto, sp.ID)
	chain.Add(MatchL4Proto{Proto: proto}, DNATToEndpoint{Count: uint32(len(eps)), Offset: base, Map: epMap})
	hairpinned := map[netip.Addr]bool{} // one pod may serve several ports
	for i, ep := range eps {
		fr.put(epMap, Element{
			Key:  []Value{NumValue(base + uint32(i))},
			Data: []Value{AddrValue(ep.Addr), NumValue(uint32(ep.Port))},
		})
		if !hairpinned[ep.Addr] {
			hairpinned[ep.Addr] = true
			fr.put(SetHairpin, Element{Key: []Value{AddrValue(ep.Addr), AddrValue(ep.Addr)}})
		}
	}
	return fr
}

func newEndpointMap(f Family, p Protocol, name string) *Set {
	return &Set{Name: name, Key: []Datatype{TypeIndex}, Data: []Datatype{AddrType(f), TypeInetService}, Proto: p}
}

// masqueradeMatch returns the statements that select ClusterIP traffic to
// masquerade in family f: everything with --masquerade-all, else traffic
// from outside the cluster CIDRs of that family, else nothing (nil).
func masqueradeMatch(st *model.State, f Family) []Stmt {
	if st.MasqueradeAll {
		return []Stmt{}
	}
	var m []Stmt
	for _, p := range st.ClusterCIDRs {
		if FamilyOf(p.Addr()) == f {
			m = append(m, MatchPrefix{Field: FieldSaddr, Negate: true, Prefix: p.Masked()})
		}
	}
	return m
}

func dispatchElement(ip netip.Addr, p Protocol, port uint16, v Stmt) Element {
	verdict := v.(VerdictStmt).Verdict
	return Element{
		Key:     []Value{AddrValue(ip), NumValue(uint32(p)), NumValue(uint32(port))},
		Verdict: &verdict,
	}
}

func endpointsOfFamily(eps []model.Endpoint, f Family) []model.Endpoint {
	var out []model.Endpoint
	for _, ep := range eps {
		if FamilyOf(ep.Addr) == f {
			out = append(out, ep)
		}
	}
	return out
}

// ProtocolOf converts a Service protocol.
func ProtocolOf(p v1.Protocol) (Protocol, bool) {
	switch p {
	case v1.ProtocolTCP:
		return TCP, true
	case v1.ProtocolUDP:
		return UDP, true
	case v1.ProtocolSCTP:
		return SCTP, true
	}
	return 0, false
}
