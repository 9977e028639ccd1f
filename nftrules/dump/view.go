package dump

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/nftproxy/nftproxy/nftrules"
	"github.com/nftproxy/nftproxy/nftrules/nft"
	"github.com/nftproxy/nftproxy/proxier/model"
)

// DispatchKey is the key of a dispatch element: an address, protocol and
// port (Addr invalid for a node port, which matches any node address).
type DispatchKey struct {
	Addr  netip.Addr
	Proto nft.Protocol
	Port  uint16
}

// PortRef names a Service port and the kind of frontend a key is for it.
type PortRef struct {
	Name model.ServicePortName
	Kind string
}

// Names tells which Service port a dispatch key belongs to. The kernel
// records the name of a Service port whose traffic goes to a chain (in the
// chain's name), not of one whose traffic is rejected or dropped (its
// dispatch element points at a shared chain or verdict); Names fills that
// gap when the API objects are known.
type Names map[DispatchKey]PortRef

// NamesOf returns the frontends of every Service port of a State.
func NamesOf(st *model.State) Names {
	n := Names{}
	for sp := range st.All() {
		p, ok := nftrules.ProtocolOf(sp.Protocol)
		if !ok {
			continue
		}
		for _, ip := range append(append([]netip.Addr{}, sp.ExternalIPs...), sp.LoadBalancerIPs...) {
			n[DispatchKey{Addr: ip, Proto: p, Port: sp.Port}] = PortRef{Name: sp.Name, Kind: KindExternalIP}
		}
		for _, ip := range sp.ClusterIPs {
			n[DispatchKey{Addr: ip, Proto: p, Port: sp.Port}] = PortRef{Name: sp.Name, Kind: KindClusterIP}
		}
		if sp.NodePort != 0 {
			n[DispatchKey{Proto: p, Port: sp.NodePort}] = PortRef{Name: sp.Name, Kind: KindNodePort}
		}
	}
	return n
}

// FromRuleset reconstructs the per-Service view of a ruleset: a live one
// (rules as text, as Reconciler.ReadLive returns it) or a built one. names
// may be nil. It never fails: whatever does not fit our layout is reported
// in Problems.
func FromRuleset(rs *nft.Ruleset, names Names) *Dump {
	v := &viewer{names: names, ports: map[string]*ServicePort{}}
	d := &Dump{SchemaVersion: SchemaVersion, Tables: []Table{}, Services: []ServicePort{}}
	for _, f := range rs.SortedFamilies() {
		d.Tables = append(d.Tables, v.table(rs.Tables[f]))
	}
	d.Services = make([]ServicePort, 0, len(v.ports))
	for _, sp := range v.ports {
		sortFrontends(sp.Frontends)
		d.Services = append(d.Services, *sp)
	}
	sortServicePorts(d.Services)
	return d
}

var kindOrder = []string{KindClusterIP, KindIP, KindExternalIP, KindNodePort}

func sortFrontends(fs []Frontend) {
	slices.SortFunc(fs, func(a, b Frontend) int {
		return cmp.Or(cmp.Compare(slices.Index(kindOrder, a.Kind), slices.Index(kindOrder, b.Kind)),
			cmp.Compare(familyOrder(a.Family), familyOrder(b.Family)),
			strings.Compare(a.Address, b.Address), cmp.Compare(a.Port, b.Port))
	})
}

func familyOrder(f string) int { return slices.Index(nft.Families, nft.Family(f)) }

// sortServicePorts orders named ports by namespace, name, port name and
// protocol, then unnamed ones by port and first frontend. It sorts
// pointers and moves each port once: a ServicePort is ~200 bytes, and
// sorting 10,000 of them in place copied them at every swap and compare.
func sortServicePorts(sps []ServicePort) {
	ptrs := make([]*ServicePort, len(sps))
	for i := range sps {
		ptrs[i] = &sps[i]
	}
	slices.SortFunc(ptrs, compareServicePorts)
	sorted := make([]ServicePort, len(sps))
	for i, p := range ptrs {
		sorted[i] = *p
	}
	copy(sps, sorted)
}

func compareServicePorts(a, b *ServicePort) int {
	an, bn := a.Name == "", b.Name == ""
	if an != bn {
		if an {
			return 1
		}
		return -1
	}
	c := cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name),
		strings.Compare(a.PortName, b.PortName), strings.Compare(a.Protocol, b.Protocol), cmp.Compare(a.Port, b.Port))
	if c != 0 || len(a.Frontends) == 0 || len(b.Frontends) == 0 {
		return c
	}
	fa, fb := &a.Frontends[0], &b.Frontends[0]
	return cmp.Or(strings.Compare(fa.Family, fb.Family), strings.Compare(fa.Address, fb.Address), cmp.Compare(fa.Port, fb.Port))
}

type viewer struct {
	names Names
	// ports by identity: "ns/name/proto/port" (as in chain names) for
	// named ports, the dispatch key for unnamed ones.
	ports map[string]*ServicePort
}

// port returns the entry of the Service port a dispatch element belongs
// to, and the frontend kind the API gives the key ("" if unknown). chain is
// the chain the element sends traffic to ("" for reject or drop).
func (v *viewer) port(f nft.Family, k DispatchKey, chain string) (*ServicePort, string) {
	var sp *ServicePort
	kind := ""
	if ref, ok := v.names[k]; ok {
		sp = v.entry(ref.Name.String())
		sp.Namespace, sp.Name, sp.PortName = ref.Name.Namespace, ref.Name.Name, ref.Name.Port
		sp.NameTruncated = false
		sp.Protocol, kind = strings.ToUpper(string(ref.Name.Protocol)), ref.Kind
	} else if identity, name, truncated, ok := parseChainName(chain); ok {
		sp = v.entry(identity)
		if sp.Name == "" {
			sp.Namespace, sp.Name, sp.PortName, sp.NameTruncated = name.Namespace, name.Name, name.Port, truncated
			sp.Protocol = strings.ToUpper(k.Proto.String())
		}
	} else {
		sp = v.entry(fmt.Sprintf("?%s %s %s %d", f, k.Addr, k.Proto, k.Port))
		sp.Protocol = strings.ToUpper(k.Proto.String())
	}
	if k.Addr.IsValid() || sp.Port == 0 {
		sp.Port = k.Port
	}
	return sp, kind
}

func (v *viewer) entry(key string) *ServicePort {
	sp, ok := v.ports[key]
	if !ok {
		sp = &ServicePort{Frontends: []Frontend{}}
		v.ports[key] = sp
	}
	return sp
}

// chainNamers are the chain kinds named after a Service port
// ("<prefix>-<hash>-ns/name/proto/port").
var chainNamers = map[string]func(model.ServicePortName) string{
	"svc": nftrules.ServiceChainName,
	"ext": nftrules.ExternalChainName,
}

// parseChainName recovers a Service port's identity from the name of its
// service or external chain. truncated is set when the name was cut
// (nftrules keeps at most 96 characters of it).
func parseChainName(chain string) (identity string, name model.ServicePortName, truncated, ok bool) {
	namer, identity, ok := chainIdentity(chain)
	if !ok {
		return "", name, false, false
	}
	parts := strings.SplitN(identity, "/", 4)
	for len(parts) < 4 {
		parts = append(parts, "")
	}
	name = model.ServicePortName{NamespacedName: types.NamespacedName{Namespace: parts[0], Name: parts[1]}, Port: parts[3], Protocol: v1.Protocol(strings.ToUpper(parts[2]))}
	return identity, name, namer(name) != chain, true
}

// chainIdentity splits the name of a service or external chain (ok false
// for other chains) without checking its hash.
func chainIdentity(chain string) (namer func(model.ServicePortName) string, identity string, ok bool) {
	prefix, rest, found := strings.Cut(chain, "-")
	namer, known := chainNamers[prefix]
	if !found || !known || len(rest) < 9 || rest[8] != '-' {
		return nil, "", false
	}
	return namer, rest[9:], true
}

// tableView holds one table's parsed rules while it is viewed.
type tableView struct {
	t        *nft.Table
	rules    map[string][]nft.Rule // nil Stmts: unreadable rule
	resolved map[string]*resolution
	used     map[string]map[uint32]bool // endpoint map -> keys used
}

func (v *viewer) table(t *nft.Table) Table {
	f := t.Family
	tv := Table{Family: string(f), Name: t.Name, Chains: t.Chains.Len(), Sets: t.Sets.Len()}
	w := &tableView{t: t, rules: make(map[string][]nft.Rule, t.Chains.Len()), resolved: map[string]*resolution{}, used: map[string]map[uint32]bool{}}
	chains := t.SortedChains()
	for _, c := range chains {
		tv.Rules += len(c.Rules)
		rules := make([]nft.Rule, len(c.Rules))
		for i, r := range c.Rules {
			pr, err := parseRule(f, r)
			if err != nil {
				tv.Problems = append(tv.Problems, fmt.Sprintf("chain %s rule %d: %v", c.Name, i+1, err))
				continue
			}
			rules[i] = pr
		}
		w.rules[c.Name] = rules
	}
	for _, s := range t.SortedSets() {
		tv.Elements += s.Len()
		if len(s.Key) == 0 {
			tv.Problems = append(tv.Problems, fmt.Sprintf("set %s has a type nftproxy does not use", s.Name))
		}
	}
	tv.Masquerade = masqueradeOf(w.rules[nftrules.ChainServices])

	clusterIPs := t.Sets.Get(nftrules.SetClusterIPs)
	for _, d := range []struct {
		set      string
		nodePort bool
		reject   bool
	}{
		{nftrules.SetServiceIPs, false, false},
		{nftrules.SetNoEndpointServices, false, true},
		{nftrules.SetServiceNodePorts, true, false},
		{nftrules.SetNoEndpointNodePorts, true, true},
	} {
		s := t.Sets.Get(d.set)
		if s == nil || !s.Verdict {
			continue
		}
		for _, e := range s.SortedElements() {
			k, ok := dispatchKeyOf(e, d.nodePort)
			if !ok {
				tv.Problems = append(tv.Problems, fmt.Sprintf("@%s element %s: unexpected key", s.Name, e.KeyString()))
				continue
			}
			v.frontend(w, s, e, k, d.nodePort, d.reject, clusterIPs)
		}
	}

	// A Service chain nothing jumps to is left over.
	referenced := map[string]bool{}
	for _, s := range t.Sets.All() {
		if s.Verdict {
			s.Each(func(e nft.Element) {
				if e.Verdict != nil && e.Verdict.Chain != "" {
					referenced[e.Verdict.Chain] = true
				}
			})
		}
	}
	for _, rules := range w.rules {
		for _, r := range rules {
			for _, st := range r.Stmts {
				if vs, ok := st.(nft.VerdictStmt); ok && vs.Chain != "" {
					referenced[vs.Chain] = true
				}
			}
		}
	}
	for _, c := range chains {
		if _, _, named := chainIdentity(c.Name); named && !referenced[c.Name] {
			tv.Problems = append(tv.Problems, fmt.Sprintf("chain %s: nothing jumps to it", c.Name))
		}
	}
	for _, s := range t.SortedSets() {
		if !strings.HasPrefix(s.Name, "endpoints-") || len(s.Key) == 0 {
			continue
		}
		if orphans := s.Len() - len(w.used[s.Name]); orphans > 0 {
			tv.Problems = append(tv.Problems, fmt.Sprintf("@%s holds %d entries no service chain uses", s.Name, orphans))
		}
	}
	return tv
}

// frontend adds the frontend of one dispatch element to its Service port.
func (v *viewer) frontend(w *tableView, s *nft.Set, e nft.Element, k DispatchKey, nodePort, reject bool, clusterIPs *nft.Set) {
	f := w.t.Family
	chain := ""
	if e.Verdict != nil && (e.Verdict.Kind == nft.Goto || e.Verdict.Kind == nft.Jump) && e.Verdict.Chain != nftrules.ChainReject {
		chain = e.Verdict.Chain
	}
	sp, kind := v.port(f, k, chain)
	fe := Frontend{Family: string(f), Port: k.Port, Endpoints: []Endpoint{}, Kind: kind}
	if !nodePort {
		fe.Address = k.Addr.String()
	}
	problem := func(format string, args ...any) {
		sp.Problems = append(sp.Problems, fmt.Sprintf("%s %s: ", f, frontendText(fe))+fmt.Sprintf(format, args...))
	}
	switch {
	case nodePort:
		fe.Kind = KindNodePort
	case clusterIPs != nil && !reject && inSet(clusterIPs, k.Addr):
		fe.Kind = KindClusterIP
	case kind != "":
	case chain != "":
		fe.Kind = KindExternalIP
	default:
		fe.Kind = KindIP
	}
	switch {
	case e.Verdict == nil:
		problem("@%s element has no verdict", s.Name)
	case reject:
		fe.Status = StatusNoEndpoints
		if e.Verdict.Kind != nft.Goto || e.Verdict.Chain != nftrules.ChainReject {
			problem("@%s verdict is %q, want goto %s", s.Name, e.ValueString(), nftrules.ChainReject)
		}
	case e.Verdict.Kind == nft.Drop:
		fe.Status = StatusDrop
	case chain == "":
		fe.Status = StatusNoEndpoints
		problem("@%s verdict is %q", s.Name, e.ValueString())
	default:
		fe.Chain = chain
		r := w.resolve(chain, 0)
		fe.Map, fe.FirstKey = r.m, r.firstKey
		fe.Endpoints = append(fe.Endpoints, r.endpoints...)
		fe.SourceDependent = r.sourceDependent
		fe.AffinityTimeoutSeconds = r.affinity
		for _, p := range r.problems {
			problem("%s", p)
		}
		switch {
		case len(fe.Endpoints) > 0:
			fe.Status = StatusActive
		case r.drop:
			fe.Status = StatusDrop
		default:
			fe.Status = StatusNoEndpoints
			problem("chain %s leads to no endpoint", chain)
		}
	}
	sp.Frontends = append(sp.Frontends, fe)
}

func inSet(s *nft.Set, a netip.Addr) bool {
	_, _, ok := s.Get(nft.AddrValue(a))
	return ok
}

func frontendText(fe Frontend) string {
	if fe.Kind == KindNodePort {
		return fmt.Sprintf("nodePort %d", fe.Port)
	}
	return fe.Address
}

// resolution is what a chain leads to.
type resolution struct {
	endpoints       []Endpoint
	m               string
	firstKey        uint32
	drop            bool
	sourceDependent bool
	affinity        int
	problems        []string
}

// maxDepth bounds chain recursion (our layout is at most three deep).
const maxDepth = 8

// resolve follows a chain to every endpoint it may DNAT to: endpoint map
// ranges (numgen ... map @endpoints-*), endpoint-chain map ranges
// (numgen ... vmap @endpoint-chains-*), single DNATs (session affinity's
// endpoint chains) and the chains it goes to.
func (w *tableView) resolve(chain string, depth int) *resolution {
	if r, ok := w.resolved[chain]; ok {
		return r
	}
	r := &resolution{}
	w.resolved[chain] = r
	rules, ok := w.rules[chain]
	if !ok {
		r.problems = append(r.problems, fmt.Sprintf("chain %s does not exist", chain))
		return r
	}
	if depth > maxDepth {
		r.problems = append(r.problems, fmt.Sprintf("chain %s: chains nested too deep", chain))
		return r
	}
	// A chain leads to a handful of endpoints: a linear search finds
	// duplicates at less cost than a map per chain, up to a point.
	var seen map[Endpoint]bool
	add := func(eps ...Endpoint) {
		for _, e := range eps {
			switch {
			case seen != nil:
				if seen[e] {
					continue
				}
				seen[e] = true
			case slices.Contains(r.endpoints, e):
				continue
			case len(r.endpoints) == 32:
				seen = make(map[Endpoint]bool, 64)
				for _, o := range r.endpoints {
					seen[o] = true
				}
				seen[e] = true
			}
			r.endpoints = append(r.endpoints, e)
		}
	}
	merge := func(sub *resolution) {
		add(sub.endpoints...)
		r.drop = r.drop || sub.drop
		r.sourceDependent = r.sourceDependent || sub.sourceDependent
		r.affinity = max(r.affinity, sub.affinity)
		r.problems = append(r.problems, sub.problems...)
	}
	for i, rule := range rules {
		if rule.Stmts == nil {
			r.problems = append(r.problems, fmt.Sprintf("chain %s rule %d is not nftproxy's", chain, i+1))
			continue
		}
		for j, s := range rule.Stmts {
			switch s := s.(type) {
			case nft.MatchPrefix, nft.MatchFibSaddrLocal:
				r.sourceDependent = true
			case nft.DNATToEndpoint:
				if j == 0 {
					r.problems = append(r.problems, fmt.Sprintf("chain %s: dnat without a meta l4proto match", chain))
				}
				w.mapRange(r, s.Map, s.Offset, s.Count, func(key uint32, e nft.Element) {
					if len(e.Data) != 2 || !e.Data[0].Addr.IsValid() || e.Data[1].Num > 0xffff {
						r.problems = append(r.problems, fmt.Sprintf("@%s entry %d has value %q", s.Map, key, e.ValueString()))
						return
					}
					add(Endpoint{Address: e.Data[0].Addr.String(), Port: uint16(e.Data[1].Num)})
				})
			case nft.NumgenVmap:
				w.mapRange(r, s.Map, s.Offset, s.Count, func(key uint32, e nft.Element) {
					if e.Verdict == nil || e.Verdict.Chain == "" {
						r.problems = append(r.problems, fmt.Sprintf("@%s entry %d has verdict %q", s.Map, key, e.ValueString()))
						return
					}
					merge(w.resolve(e.Verdict.Chain, depth+1))
				})
			case nft.DNATTo:
				add(Endpoint{Address: s.To.Addr().String(), Port: s.To.Port()})
			case nft.UpdateSourceSet:
				if set := w.t.Sets.Get(s.Set); set != nil && set.Timeout > 0 {
					r.affinity = max(r.affinity, int(set.Timeout.Seconds()))
				}
			case nft.VerdictStmt:
				switch {
				case s.Kind == nft.Drop:
					r.drop = true
				case s.Chain == "" || s.Chain == nftrules.ChainMarkForMasquerade || s.Chain == nftrules.ChainReject:
				default:
					merge(w.resolve(s.Chain, depth+1))
				}
			}
		}
	}
	return r
}

// mapRange calls fn for entries offset..offset+count-1 of a map (with the
// entry's value, not its key), noting the first range as the frontend's
// map and reporting missing entries.
func (w *tableView) mapRange(r *resolution, name string, offset, count uint32, fn func(uint32, nft.Element)) {
	if r.m == "" {
		r.m, r.firstKey = name, offset
	}
	m := w.t.Sets.Get(name)
	if m == nil {
		r.problems = append(r.problems, fmt.Sprintf("map @%s does not exist", name))
		return
	}
	if count > nftrules.MaxEndpoints {
		// Not a rule of ours (the text is read back from the kernel):
		// walking four billion keys would never end.
		r.problems = append(r.problems, fmt.Sprintf("numgen random mod %d into @%s: more than the %d endpoints of a service port", count, name, nftrules.MaxEndpoints))
		return
	}
	if w.used[name] == nil {
		w.used[name] = map[uint32]bool{}
	}
	for i := uint32(0); i < count; i++ {
		key := offset + i
		data, verdict, ok := m.Get(nft.NumValue(key))
		if !ok {
			r.problems = append(r.problems, fmt.Sprintf("@%s has no entry %d (want %d..%d)", name, key, offset, offset+count-1))
			continue
		}
		w.used[name][key] = true
		fn(key, nft.Element{Data: data, Verdict: verdict})
	}
}

func parseRule(f nft.Family, r nft.Rule) (nft.Rule, error) {
	if len(r.Stmts) == 1 {
		if o, ok := r.Stmts[0].(nft.Opaque); ok {
			return nft.ParseRule(f, o.Text)
		}
	}
	return r, nil
}

func dispatchKeyOf(e nft.Element, nodePort bool) (DispatchKey, bool) {
	if nodePort {
		if len(e.Key) != 2 || e.Key[0].Num > 0xff || e.Key[1].Num > 0xffff {
			return DispatchKey{}, false
		}
		return DispatchKey{Proto: nft.Protocol(e.Key[0].Num), Port: uint16(e.Key[1].Num)}, true
	}
	if len(e.Key) != 3 || !e.Key[0].Addr.IsValid() || e.Key[1].Num > 0xff || e.Key[2].Num > 0xffff {
		return DispatchKey{}, false
	}
	return DispatchKey{Addr: e.Key[0].Addr, Proto: nft.Protocol(e.Key[1].Num), Port: uint16(e.Key[2].Num)}, true
}

// masqueradeOf reads the ClusterIP masquerade policy from the services
// chain: a rule "[ip saddr != CIDR ...] ip daddr @cluster-ips jump
// mark-for-masquerade".
func masqueradeOf(rules []nft.Rule) Masquerade {
	for _, r := range rules {
		if r.Stmts == nil {
			return Masquerade{Mode: MasqueradeUnknown}
		}
	}
	for _, r := range rules {
		n := len(r.Stmts)
		if n < 2 || r.Stmts[n-1] != nft.JumpTo(nftrules.ChainMarkForMasquerade) {
			continue
		}
		if l, ok := r.Stmts[n-2].(nft.SetLookup); !ok || l.Set != nftrules.SetClusterIPs {
			continue
		}
		m := Masquerade{Mode: MasqueradeAll}
		for _, s := range r.Stmts[:n-2] {
			p, ok := s.(nft.MatchPrefix)
			if !ok || p.Field != nft.FieldSaddr || !p.Negate {
				return Masquerade{Mode: MasqueradeUnknown}
			}
			m.Mode = MasqueradeOffCluster
			m.ClusterCIDRs = append(m.ClusterCIDRs, p.Prefix.String())
		}
		return m
	}
	return Masquerade{Mode: MasqueradeNone}
}
