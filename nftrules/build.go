package nftrules

import (
	"net/netip"

	v1 "k8s.io/api/core/v1"

	"github.com/nftproxy/nftproxy/proxier/model"
)

// Build returns the ruleset for a desired state. It is pure and
// deterministic: the same State always yields the same Ruleset, and a change
// to one service port changes only that service port's chain and elements.
//
// Both family tables are always present (with their shared chains and
// sets), so that the skeleton never churns as Services come and go.
func Build(st *model.State) *Ruleset {
	rs := NewRuleset()
	for _, f := range Families {
		buildSkeleton(rs.Table(f))
	}
	for _, sp := range st.Services {
		for _, f := range Families {
			buildServicePort(rs.Table(f), st, sp)
		}
	}
	return rs
}

// buildSkeleton adds the base chains, shared chains and shared sets.
func buildSkeleton(t *Table) {
	f := t.Family
	addr := AddrType(f)
	dispatchKey := []Datatype{addr, TypeInetProto, TypeInetService}
	dispatchFields := []Field{FieldDaddr, FieldL4Proto, FieldDport}

	t.Sets[SetServiceIPs] = &Set{Name: SetServiceIPs, Key: dispatchKey, Verdict: true}
	t.Sets[SetNoEndpointServices] = &Set{Name: SetNoEndpointServices, Key: dispatchKey, Verdict: true}
	t.Sets[SetHairpin] = &Set{Name: SetHairpin, Key: []Datatype{addr, addr}}

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
	t.Chain(ChainServices).Add(VmapLookup{Fields: dispatchFields, Map: SetServiceIPs})
	t.Chain(ChainMarkForMasquerade).Add(SetMarkBits{Bits: MasqueradeBit})

	post := base(ChainNATPostrouting, NATChain, Postrouting, 100)
	post.Add(MatchCtStatusDNAT{}, SetLookup{Fields: []Field{FieldSaddr, FieldDaddr}, Set: SetHairpin}, JumpTo(ChainMarkForMasquerade))
	post.Add(MatchMarkUnset{Bits: MasqueradeBit}, ReturnStmt)
	post.Add(ClearMarkBits{Bits: MasqueradeBit})
	post.Add(Masquerade{})
}

// buildServicePort programs one service port in one family table: its
// dispatch entry, its chain and its endpoints.
func buildServicePort(t *Table, st *model.State, sp *model.ServicePort) {
	proto, ok := ProtocolOf(sp.Protocol)
	if !ok || sp.ID > MaxServicePortID {
		// The proxier never hands out such IDs; a wrapped offset would
		// overwrite another service port's endpoints.
		return
	}
	f := t.Family
	var clusterIPs []netip.Addr
	for _, ip := range sp.ClusterIPs {
		if FamilyOf(ip) == f {
			clusterIPs = append(clusterIPs, ip)
		}
	}
	if len(clusterIPs) == 0 {
		return
	}
	eps := endpointsOfFamily(ClusterEndpoints(st, sp), f)
	if len(eps) > MaxEndpoints {
		eps = eps[:MaxEndpoints]
	}

	if len(eps) == 0 {
		for _, ip := range clusterIPs {
			t.Sets[SetNoEndpointServices].Put(dispatchElement(ip, proto, sp.Port, GotoChain(ChainReject)))
		}
		return
	}

	chain := ServiceChainName(sp.Name)
	for _, ip := range clusterIPs {
		t.Sets[SetServiceIPs].Put(dispatchElement(ip, proto, sp.Port, GotoChain(chain)))
	}
	c := t.Chain(chain)
	if m := masqueradeMatch(st, f); m != nil {
		c.Add(append(m, JumpTo(ChainMarkForMasquerade))...)
	}
	base := sp.ID << IndexBits
	epMap := endpointMap(t, proto, sp.ID)
	c.Add(MatchL4Proto{Proto: proto}, DNATToEndpoint{Count: uint32(len(eps)), Offset: base, Map: epMap.Name})

	hairpin := t.Sets[SetHairpin]
	for i, ep := range eps {
		epMap.Put(Element{
			Key:  []Value{NumValue(base + uint32(i))},
			Data: []Value{AddrValue(ep.Addr), NumValue(uint32(ep.Port))},
		})
		hairpin.Put(Element{Key: []Value{AddrValue(ep.Addr), AddrValue(ep.Addr)}})
	}
}

// endpointMap returns the endpoint map of a service port, adding it to the
// table when it is the first service port of its shard.
func endpointMap(t *Table, p Protocol, id uint32) *Set {
	name := EndpointMapName(p, id)
	if s, ok := t.Sets[name]; ok {
		return s
	}
	s := newEndpointMap(t.Family, p, name)
	t.Sets[name] = s
	return s
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
