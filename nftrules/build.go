package nftrules

import (
	"github.com/nftproxy/nftproxy/nftrules/nft"
	"net/netip"
	"slices"

	v1 "k8s.io/api/core/v1"

	"github.com/nftproxy/nftproxy/proxier/endpoints"
	"github.com/nftproxy/nftproxy/proxier/model"
)

// buildSkeleton adds the base chains, shared chains and shared sets.
func buildSkeleton(t *nft.Table, st *model.State) {
	f := t.Family
	addr := nft.AddrType(f)
	dispatchKey := []nft.Datatype{addr, nft.TypeInetProto, nft.TypeInetService}
	dispatchFields := []nft.Field{nft.FieldDaddr, nft.FieldL4Proto, nft.FieldDport}

	t.Sets.Put(SetServiceIPs, &nft.Set{Name: SetServiceIPs, Key: dispatchKey, Verdict: true})
	t.Sets.Put(SetNoEndpointServices, &nft.Set{Name: SetNoEndpointServices, Key: dispatchKey, Verdict: true})
	// Keys several service ports contribute (a pod behind several
	// Services, a multi-port Service's ClusterIP) are shared.
	t.Sets.Put(SetHairpin, &nft.Set{Name: SetHairpin, Key: []nft.Datatype{addr, addr}, SharedKeys: true})
	t.Sets.Put(SetClusterIPs, &nft.Set{Name: SetClusterIPs, Key: []nft.Datatype{addr}, SharedKeys: true})
	portKey := []nft.Datatype{nft.TypeInetProto, nft.TypeInetService}
	portFields := []nft.Field{nft.FieldL4Proto, nft.FieldDport}
	t.Sets.Put(SetNodePortIPs, &nft.Set{Name: SetNodePortIPs, Key: []nft.Datatype{addr}})
	for _, ip := range st.NodePortIPs {
		if nft.FamilyOf(ip) == f {
			t.Sets.Get(SetNodePortIPs).Put(nft.Element{Key: []nft.Value{nft.AddrValue(ip.Unmap())}})
		}
	}
	t.Sets.Put(SetServiceNodePorts, &nft.Set{Name: SetServiceNodePorts, Key: portKey, Verdict: true})
	t.Sets.Put(SetNoEndpointNodePorts, &nft.Set{Name: SetNoEndpointNodePorts, Key: portKey, Verdict: true})
	t.Sets.Put(SetMasqueradeExternalIPs, &nft.Set{Name: SetMasqueradeExternalIPs, Key: dispatchKey})
	t.Sets.Put(SetMasqueradeNodePorts, &nft.Set{Name: SetMasqueradeNodePorts, Key: portKey})
	t.Sets.Put(SetFirewallIPs, &nft.Set{Name: SetFirewallIPs, Key: dispatchKey, Verdict: true})
	nodePortIP := nft.SetLookup{Fields: []nft.Field{nft.FieldDaddr}, Set: SetNodePortIPs}

	base := func(name string, typ nft.ChainType, hook nft.Hook, prio int) *nft.Chain {
		c := t.Chain(name)
		c.Base = &nft.BaseChain{Type: typ, Hook: hook, Priority: prio}
		return c
	}
	// Filter: reject new connections to Services without endpoints, for
	// forwarded traffic (from pods and other hosts) and local traffic.
	// NodePorts (and external IPs the node owns) arrive through input.
	base(ChainFilterInput, nft.FilterChain, nft.Input, 0).Add(nft.MatchCtStateNew{}, nft.JumpTo(ChainEndpointsCheck))
	base(ChainFilterForward, nft.FilterChain, nft.Forward, 0).Add(nft.MatchCtStateNew{}, nft.JumpTo(ChainEndpointsCheck))
	base(ChainFilterOutput, nft.FilterChain, nft.Output, 0).Add(nft.MatchCtStateNew{}, nft.JumpTo(ChainEndpointsCheck))
	check := t.Chain(ChainEndpointsCheck)
	check.Add(nft.VmapLookup{Fields: dispatchFields, Map: SetNoEndpointServices})
	check.Add(nodePortIP, nft.VmapLookup{Fields: portFields, Map: SetNoEndpointNodePorts})

	// Before DNAT (the destination is still the load balancer IP): drop
	// traffic to load balancer IPs from outside loadBalancerSourceRanges.
	pre := base(ChainFilterPrerouting, nft.FilterChain, nft.Prerouting, -110)
	if f == nft.IPv4 && hasLoopback(st.NodePortIPs) {
		// Localhost NodePorts need route_localnet, which would also let
		// other hosts reach the node's 127.0.0.0/8 services: drop what
		// arrives for 127.0.0.0/8 from elsewhere (CVE-2020-8558).
		loopback := netip.MustParsePrefix("127.0.0.0/8")
		pre.Add(nft.MatchPrefix{Field: nft.FieldDaddr, Prefix: loopback}, nft.MatchPrefix{Field: nft.FieldSaddr, Negate: true, Prefix: loopback}, nft.DropStmt)
	}
	pre.Add(nft.MatchCtStateNew{}, nft.VmapLookup{Fields: dispatchFields, Map: SetFirewallIPs})
	base(ChainFilterOutputPreDNAT, nft.FilterChain, nft.Output, -110).Add(nft.MatchCtStateNew{}, nft.VmapLookup{Fields: dispatchFields, Map: SetFirewallIPs})
	rej := t.Chain(ChainReject)
	rej.Add(nft.MatchL4Proto{Proto: nft.TCP}, nft.RejectTCPReset{})
	rej.Add(nft.Reject{})

	// NAT: dispatch to service chains before routing; masquerade after.
	base(ChainNATPrerouting, nft.NATChain, nft.Prerouting, -100).Add(nft.JumpTo(ChainServices))
	base(ChainNATOutput, nft.NATChain, nft.Output, -100).Add(nft.JumpTo(ChainServices))
	services := t.Chain(ChainServices)
	if m := masqueradeMatch(st, f); m != nil {
		// One rule for all Services rather than one per service chain:
		// every rule is a kernel object to commit.
		services.Add(append(m, nft.SetLookup{Fields: []nft.Field{nft.FieldDaddr}, Set: SetClusterIPs}, nft.JumpTo(ChainMarkForMasquerade))...)
	}
	// External traffic with externalTrafficPolicy Cluster is masqueraded.
	services.Add(nft.SetLookup{Fields: dispatchFields, Set: SetMasqueradeExternalIPs}, nft.JumpTo(ChainMarkForMasquerade))
	services.Add(nft.VmapLookup{Fields: dispatchFields, Map: SetServiceIPs})
	services.Add(nodePortIP, nft.SetLookup{Fields: portFields, Set: SetMasqueradeNodePorts}, nft.JumpTo(ChainMarkForMasquerade))
	services.Add(nodePortIP, nft.VmapLookup{Fields: portFields, Map: SetServiceNodePorts})
	t.Chain(ChainMarkForMasquerade).Add(nft.SetMarkBits{Bits: MasqueradeBit})

	post := base(ChainNATPostrouting, nft.NATChain, nft.Postrouting, 100)
	post.Add(nft.MatchCtStatusDNAT{}, nft.SetLookup{Fields: []nft.Field{nft.FieldSaddr, nft.FieldDaddr}, Set: SetHairpin}, nft.JumpTo(ChainMarkForMasquerade))
	post.Add(nft.MatchMarkUnset{Bits: MasqueradeBit}, nft.ReturnStmt)
	post.Add(nft.ClearMarkBits{Bits: MasqueradeBit})
	post.Add(nft.Masquerade{})
}

// fragment is what one service port contributes to one family's table:
// its chains and, per set, its elements. Once added to a ruleset
// (addFragment) only a placed record of it is kept.
type fragment struct {
	own    [ownChains]*nft.Chain // the chains named after the service port
	chains []*nft.Chain          // the others (session affinity's), by name
	// sets are the service port's own sets (session affinity).
	sets     []*nft.Set
	elements map[string][]nft.Element
	packs    []packedElements // elements collected packed (nft.Packer)
}

// packedElements are a fragment's elements of one set, packed.
type packedElements struct {
	set string
	p   *nft.Packer
}

// pack returns a Packer for n elements of a set of these types.
func (fr *fragment) pack(set string, key, data []nft.Datatype, n int) *nft.Packer {
	p := nft.NewPacker(key, data, n)
	if fr.packs == nil {
		fr.packs = make([]packedElements, 0, 2) // endpoint map and hairpin
	}
	fr.packs = append(fr.packs, packedElements{set, p})
	return p
}

func (fr *fragment) put(set string, e nft.Element) {
	if fr.elements == nil {
		fr.elements = map[string][]nft.Element{}
	}
	fr.elements[set] = append(fr.elements[set], e)
}

// serviceFragment builds one service port's fragment for family f (nil when
// the service port has nothing in that family); svcName is its
// ServiceChainName. The README describes what each piece is for.
func serviceFragment(st *model.State, sp *model.ServicePort, f nft.Family, svcName string) *fragment {
	proto, ok := ProtocolOf(sp.Protocol)
	if !ok || sp.ID > MaxServicePortID {
		// The proxier never hands out such IDs; a wrapped offset would
		// overwrite another service port's endpoints.
		return nil
	}
	clusterIPs := addrsOfFamily(sp.ClusterIPs, f)
	if len(clusterIPs) == 0 {
		return nil
	}
	lbIPs := addrsOfFamily(sp.LoadBalancerIPs, f)
	externalIPs := addrsOfFamily(append(append([]netip.Addr{}, sp.ExternalIPs...), sp.LoadBalancerIPs...), f)
	external := externalIn(sp, f)

	fr := &fragment{}
	// The firewall does not depend on endpoints.
	firewallFragment(fr, sp, f, lbIPs)

	sel := selectEndpoints(st, sp, f, external)
	if len(sel.cluster) == 0 {
		// No usable endpoint anywhere: reject, whatever the policies.
		reject := nft.GotoChain(ChainReject)
		for _, ip := range append(clusterIPs, externalIPs...) {
			fr.put(SetNoEndpointServices, dispatchElement(ip, proto, sp.Port, reject))
		}
		if sp.NodePort != 0 {
			fr.put(SetNoEndpointNodePorts, nodePortElement(proto, sp.NodePort, reject))
		}
		return fr
	}

	base := sp.ID << IndexBits
	epMap := EndpointMapName(proto, sp.ID)
	var aff *affinity // session affinity: per-endpoint chains instead of the map
	if sp.SessionAffinityClientIP {
		aff = newAffinity(fr, sp, proto, base)
	}
	// Endpoints of the service port's block: the cluster-wide ones at
	// [0, nc), the local ones after them, each only if some chain uses it.
	nc, nl := uint32(len(sel.cluster)), uint32(len(sel.local))
	if !sel.needCluster {
		nc = 0
	}
	// Most of a large ruleset is endpoint elements: they go into the
	// ruleset's packed form directly (nft.Packer), without an Element
	// each.
	n := int(nc + nl)
	addr := nft.AddrType(f)
	var eps, hairpin *nft.Packer // none without endpoints: no group, no shard map
	if aff == nil && n > 0 {
		eps = fr.pack(epMap, []nft.Datatype{nft.TypeIndex}, []nft.Datatype{addr, nft.TypeInetService}, n)
	}
	// Only a local endpoint can be hairpinned: a pod's Service traffic is
	// DNATed on its own node, so a connection DNATed back to its source
	// here came from this node. Upstream (1.37) keeps only local endpoints
	// in its hairpin set too; at scale the set stays at this node's pods
	// instead of one element per endpoint of the cluster.
	nh := len(sel.local)
	for _, ep := range sel.cluster[:nc] {
		if ep.IsLocal(st.NodeName) {
			nh++
		}
	}
	if nh > 0 {
		hairpin = fr.pack(SetHairpin, []nft.Datatype{addr, addr}, nil, nh)
	}
	hairpinned := newAddrSet(nh) // one pod may serve several ports
	put := func(endpoints []model.Endpoint, off uint32) {
		var key, data [2]nft.Value
		for i, ep := range endpoints {
			if aff != nil {
				aff.endpoint(ep, off+uint32(i))
			} else {
				key[0] = nft.NumValue(base + off + uint32(i))
				data[0], data[1] = nft.AddrValue(ep.Addr), nft.NumValue(uint32(ep.Port))
				eps.Add(key[:1], data[:])
			}
			if hairpin != nil && ep.IsLocal(st.NodeName) && hairpinned.add(ep.Addr) {
				key[0], key[1] = nft.AddrValue(ep.Addr), nft.AddrValue(ep.Addr)
				hairpin.Add(key[:], nil)
			}
		}
	}
	put(sel.cluster[:nc], 0)
	put(sel.local, nc)
	dnat := func(off, n uint32) []nft.Stmt {
		if aff != nil {
			eps := sel.local // the block: cluster-wide at [0, nc), local after
			if off == 0 && nc > 0 {
				eps = sel.cluster
			}
			return aff.dispatch(eps[:n], off)
		}
		return []nft.Stmt{nft.MatchL4Proto{Proto: proto}, nft.DNATToEndpoint{Count: n, Offset: base + off, Map: epMap}}
	}
	toCluster := func(match ...nft.Stmt) []nft.Stmt { return append(match, dnat(0, nc)...) }

	// Internal traffic: the ClusterIPs.
	internal := nft.GotoChain(svcName)
	switch {
	case sp.InternalPolicyLocal && nl == 0:
		internal = nft.DropStmt // upstream: no local endpoint -> DROP
	case sp.InternalPolicyLocal:
		fr.ownChain(svcChain, svcName).Add(dnat(nc, nl)...)
	default:
		fr.ownChain(svcChain, svcName).Add(toCluster()...)
	}
	for _, ip := range clusterIPs {
		fr.put(SetServiceIPs, dispatchElement(ip, proto, sp.Port, internal))
		fr.put(SetClusterIPs, nft.Element{Key: []nft.Value{nft.AddrValue(ip)}})
	}
	if !external {
		return fr
	}

	// External traffic: NodePort, external IPs, load balancer IPs. With
	// both policies Cluster it goes straight to the service chain and is
	// masqueraded through the masquerade-* sets; otherwise through the
	// external chain.
	target := svcName
	if sp.ExternalPolicyLocal || sp.InternalPolicyLocal {
		target = ExternalChainName(sp.Name)
		ext := fr.ownChain(extChain, target)
		if sp.ExternalPolicyLocal {
			// Pods short-circuit to all endpoints, unmasqueraded; the node
			// itself is masqueraded (its source address cannot be kept)
			// and goes to all endpoints; everyone else reaches only the
			// local endpoints and keeps its address.
			for _, p := range st.ClusterCIDRs {
				if nft.FamilyOf(p.Addr()) == f && p.Bits() > 0 {
					ext.Add(toCluster(nft.MatchPrefix{Field: nft.FieldSaddr, Prefix: p.Masked()})...)
				}
			}
			ext.Add(nft.MatchFibSaddrLocal{}, nft.JumpTo(ChainMarkForMasquerade))
			ext.Add(toCluster(nft.MatchFibSaddrLocal{})...)
			if nl > 0 {
				ext.Add(dnat(nc, nl)...)
			} else {
				ext.Add(nft.DropStmt) // upstream: no local endpoint -> DROP
			}
		} else {
			ext.Add(toCluster()...)
		}
	}
	for _, ip := range externalIPs {
		fr.put(SetServiceIPs, dispatchElement(ip, proto, sp.Port, nft.GotoChain(target)))
		if !sp.ExternalPolicyLocal {
			fr.put(SetMasqueradeExternalIPs, nft.Element{Key: dispatchKey(ip, proto, sp.Port)})
		}
	}
	if sp.NodePort != 0 {
		fr.put(SetServiceNodePorts, nodePortElement(proto, sp.NodePort, nft.GotoChain(target)))
		if !sp.ExternalPolicyLocal {
			fr.put(SetMasqueradeNodePorts, nft.Element{Key: []nft.Value{nft.NumValue(uint32(proto)), nft.NumValue(uint32(sp.NodePort))}})
		}
	}
	return fr
}

// ownChain returns the fragment's chain of that kind, creating it with
// that name.
func (fr *fragment) ownChain(kind int, name string) *nft.Chain {
	if fr.own[kind] == nil {
		fr.own[kind] = &nft.Chain{Name: name}
	}
	return fr.own[kind]
}

// chain returns the fragment's chain of that name (not one of its own
// kinds), creating it.
func (fr *fragment) chain(name string) *nft.Chain {
	for _, c := range fr.chains {
		if c.Name == name {
			return c
		}
	}
	c := &nft.Chain{Name: name}
	fr.chains = append(fr.chains, c)
	return c
}

// endpointSelection is what a service port's traffic may reach in one
// family.
type endpointSelection struct {
	cluster []model.Endpoint // cluster-wide (endpoints.Cluster)
	local   []model.Endpoint // on this node, when a Local policy needs them
	// needCluster: some chain DNATs to the cluster-wide endpoints (not the
	// case for internalTrafficPolicy Local without external exposure).
	needCluster bool
	// dropped counts the endpoints left out of the two sets by the
	// per-service-port limit (MaxEndpoints).
	dropped int
}

// selectEndpoints picks the endpoint sets of a service port in family f,
// capped so that both fit the service port's block of the endpoint map.
func selectEndpoints(st *model.State, sp *model.ServicePort, f nft.Family, external bool) endpointSelection {
	// Every choice (ready or terminating, topology hints) is made per
	// family, as upstream's per-family proxiers make it.
	fam := *sp
	fam.Endpoints = endpointsOfFamily(sp.Endpoints, f)
	sel := endpointSelection{
		cluster:     endpoints.Cluster(&fam, st.NodeName, st.NodeZone),
		needCluster: !sp.InternalPolicyLocal || external,
	}
	if sp.InternalPolicyLocal || (sp.ExternalPolicyLocal && external) {
		sel.local = endpoints.Local(fam.Endpoints, st.NodeName)
	}
	// Both sets share the block: the local ones get at most half of it
	// when the cluster-wide ones need room (only past 8192 endpoints).
	before := len(sel.cluster) + len(sel.local)
	if sel.needCluster {
		sel.local = sel.local[:min(len(sel.local), MaxEndpoints/2)]
	}
	sel.cluster = sel.cluster[:min(len(sel.cluster), MaxEndpoints-len(sel.local))]
	sel.local = sel.local[:min(len(sel.local), MaxEndpoints)]
	sel.dropped = before - len(sel.cluster) - len(sel.local)
	return sel
}

// EndpointsOverLimit returns, per family, how many of a service port's
// usable endpoints Build leaves out because they do not fit the service
// port's block of the endpoint map (MaxEndpoints per service port and
// family, shared by the cluster-wide and the local endpoints); nil when
// everything fits. The proxier reports these.
func EndpointsOverLimit(st *model.State, sp *model.ServicePort) map[nft.Family]int {
	// Both selections are subsets of the endpoints: with at most
	// MaxEndpoints/2 of them everything fits.
	if len(sp.Endpoints) <= MaxEndpoints/2 {
		return nil
	}
	var out map[nft.Family]int
	for _, f := range nft.Families {
		if len(addrsOfFamily(sp.ClusterIPs, f)) == 0 {
			continue // nothing is programmed in this family
		}
		sel := selectEndpoints(st, sp, f, externalIn(sp, f))
		if sel.dropped > 0 {
			if out == nil {
				out = map[nft.Family]int{}
			}
			out[f] = sel.dropped
		}
	}
	return out
}

// externalIn reports whether a service port is reachable from outside in
// family f: a NodePort, or an external or load balancer IP of f.
func externalIn(sp *model.ServicePort, f nft.Family) bool {
	return sp.NodePort != 0 || len(addrsOfFamily(sp.ExternalIPs, f)) > 0 || len(addrsOfFamily(sp.LoadBalancerIPs, f)) > 0
}

// firewallFragment adds what loadBalancerSourceRanges need: the load
// balancer IPs go to a firewall chain returning for sources inside a range
// of the family and dropping the rest. Without a valid range of the family
// (all invalid, or ranges of the other family only) traffic to the load
// balancer IPs of this family is dropped: nftproxy fails closed where
// upstream would leave that family open. A /0 range allows everyone: no
// firewall.
func firewallFragment(fr *fragment, sp *model.ServicePort, f nft.Family, lbIPs []netip.Addr) {
	if sp.SourceRanges == nil || len(lbIPs) == 0 {
		return
	}
	proto, _ := ProtocolOf(sp.Protocol)
	var ranges []netip.Prefix
	for _, r := range sp.SourceRanges {
		if nft.FamilyOf(r.Addr()) != f {
			continue
		}
		if r.Bits() == 0 {
			return
		}
		ranges = append(ranges, r.Masked())
	}
	verdict := nft.DropStmt
	if len(ranges) > 0 {
		name := FirewallChainName(sp.Name)
		fw := fr.ownChain(fwChain, name)
		for _, r := range ranges {
			fw.Add(nft.MatchPrefix{Field: nft.FieldSaddr, Prefix: r}, nft.ReturnStmt)
		}
		fw.Add(nft.DropStmt)
		verdict = nft.GotoChain(name)
	}
	for _, ip := range lbIPs {
		fr.put(SetFirewallIPs, dispatchElement(ip, proto, sp.Port, verdict))
	}
}

func addrsOfFamily(ips []netip.Addr, f nft.Family) []netip.Addr {
	var out []netip.Addr
	seen := map[netip.Addr]bool{}
	for _, ip := range ips {
		if nft.FamilyOf(ip) == f && !seen[ip] {
			seen[ip] = true
			out = append(out, ip)
		}
	}
	return out
}

func hasLoopback(ips []netip.Addr) bool {
	for _, ip := range ips {
		if ip.Unmap().Is4() && ip.IsLoopback() {
			return true
		}
	}
	return false
}

func newEndpointMap(f nft.Family, p nft.Protocol, name string) *nft.Set {
	return &nft.Set{Name: name, Key: []nft.Datatype{nft.TypeIndex}, Data: []nft.Datatype{nft.AddrType(f), nft.TypeInetService}, Proto: p}
}

// masqueradeMatch returns the statements that select ClusterIP traffic to
// masquerade in family f: everything with --masquerade-all, else traffic
// from outside the cluster CIDRs of that family, else nothing (nil).
func masqueradeMatch(st *model.State, f nft.Family) []nft.Stmt {
	if st.MasqueradeAll {
		return []nft.Stmt{}
	}
	var m []nft.Stmt
	for _, p := range st.ClusterCIDRs {
		if nft.FamilyOf(p.Addr()) == f {
			m = append(m, nft.MatchPrefix{Field: nft.FieldSaddr, Negate: true, Prefix: p.Masked()})
		}
	}
	return m
}

func dispatchElement(ip netip.Addr, p nft.Protocol, port uint16, v nft.Stmt) nft.Element {
	verdict := v.(nft.VerdictStmt).Verdict
	return nft.Element{Key: dispatchKey(ip, p, port), Verdict: &verdict}
}

func dispatchKey(ip netip.Addr, p nft.Protocol, port uint16) []nft.Value {
	return []nft.Value{nft.AddrValue(ip), nft.NumValue(uint32(p)), nft.NumValue(uint32(port))}
}

func nodePortElement(p nft.Protocol, port uint16, v nft.Stmt) nft.Element {
	verdict := v.(nft.VerdictStmt).Verdict
	return nft.Element{Key: []nft.Value{nft.NumValue(uint32(p)), nft.NumValue(uint32(port))}, Verdict: &verdict}
}

// endpointsOfFamily returns the endpoints of family f: eps itself
// (read-only) when all are, as on single-stack clusters.
func endpointsOfFamily(eps []model.Endpoint, f nft.Family) []model.Endpoint {
	if !slices.ContainsFunc(eps, func(ep model.Endpoint) bool { return nft.FamilyOf(ep.Addr) != f }) {
		return eps[:len(eps):len(eps)]
	}
	var out []model.Endpoint
	for _, ep := range eps {
		if nft.FamilyOf(ep.Addr) == f {
			out = append(out, ep)
		}
	}
	return out
}

// ProtocolOf converts a Service protocol.
func ProtocolOf(p v1.Protocol) (nft.Protocol, bool) {
	switch p {
	case v1.ProtocolTCP:
		return nft.TCP, true
	case v1.ProtocolUDP:
		return nft.UDP, true
	case v1.ProtocolSCTP:
		return nft.SCTP, true
	}
	return 0, false
}

// addrSet is a set of addresses sized for a service port's endpoints: a
// linear search for the usual handful (no map per service port in every
// Build), a map for many.
type addrSet struct {
	few  []netip.Addr
	many map[netip.Addr]bool
}

const addrSetLinear = 16

func newAddrSet(n int) *addrSet {
	if n > addrSetLinear {
		return &addrSet{many: make(map[netip.Addr]bool, n)}
	}
	return &addrSet{few: make([]netip.Addr, 0, n)}
}

// add adds a and reports whether it was not there yet.
func (s *addrSet) add(a netip.Addr) bool {
	if s.many != nil {
		if s.many[a] {
			return false
		}
		s.many[a] = true
		return true
	}
	if slices.Contains(s.few, a) {
		return false
	}
	s.few = append(s.few, a)
	return true
}
