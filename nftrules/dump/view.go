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
// what the name of the chain the element sends traffic to tells.
func (v *viewer) port(f nft.Family, k DispatchKey, chain namedChain) (*ServicePort, string) {
	var sp *ServicePort
	kind := ""
	if ref, ok := v.names[k]; ok {
		sp = v.entry(ref.Name.String())
		sp.Namespace, sp.Name, sp.PortName = ref.Name.Namespace, ref.Name.Name, ref.Name.Port
		sp.NameTruncated = false
		sp.Protocol, kind = strings.ToUpper(string(ref.Name.Protocol)), ref.Kind
	} else if chain.ok {
		sp = v.entry(chain.identity)
		if sp.Name == "" {
			name := chain.name
			sp.Namespace, sp.Name, sp.PortName, sp.NameTruncated = name.Namespace, name.Name, name.Port, chain.truncated
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

// namedChain is what the name of a service or external chain tells of
// its Service port (ok false for other chains).
type namedChain struct {
	identity  string
	name      model.ServicePortName
	truncated bool // the name was cut (nftrules keeps 96 characters)
	ok        bool
}

// parseChainName recovers a Service port's identity from the name of its
// service or external chain.
func parseChainName(chain string) namedChain {
	namer, identity, ok := chainIdentity(chain)
	if !ok {
		return namedChain{}
	}
	parts := strings.SplitN(identity, "/", 4)
	for len(parts) < 4 {
		parts = append(parts, "")
	}
	name := model.ServicePortName{NamespacedName: types.NamespacedName{Namespace: parts[0], Name: parts[1]}, Port: parts[3], Protocol: v1.Protocol(strings.ToUpper(parts[2]))}
	return namedChain{identity: identity, name: name, truncated: namer(name) != chain, ok: true}
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

// table views one table: its rules parsed, its dispatch elements' chains
// followed to their endpoints, its frontends put into their Service ports,
// and what does not fit our layout reported.
func (v *viewer) table(t *nft.Table) Table {
	tv := Table{Family: string(t.Family), Name: t.Name, Chains: t.Chains.Len(), Sets: t.Sets.Len()}
	w := &resolver{t: t}
	chains := t.SortedChains()
	w.rules = parseRules(t.Family, chains, &tv)
	for _, s := range t.SortedSets() {
		tv.Elements += s.Len()
		if len(s.Key) == 0 {
			tv.Problems = append(tv.Problems, fmt.Sprintf("set %s has a type nftproxy does not use", s.Name))
		}
	}
	tv.Masquerade = masqueradeOf(w.rules[nftrules.ChainServices])
	prepareMaps(t, w.rules)

	referenced := map[string]bool{}
	ds, problems := dispatchesOf(t, referenced)
	tv.Problems = append(tv.Problems, problems...)
	w.resolveAll(ds)
	clusterIPs := t.Sets.Get(nftrules.SetClusterIPs)
	for _, d := range ds {
		v.frontend(w, d, clusterIPs)
	}
	tv.Problems = append(tv.Problems, unreferencedChains(t, chains, w.rules, referenced)...)
	for _, s := range t.SortedSets() {
		if !strings.HasPrefix(s.Name, "endpoints-") || len(s.Key) == 0 {
			continue
		}
		if orphans := s.Len() - entriesUsed(s, w.walked[s.Name]); orphans > 0 {
			tv.Problems = append(tv.Problems, fmt.Sprintf("@%s holds %d entries no service chain uses", s.Name, orphans))
		}
	}
	return tv
}

// parseRules parses the rules of every chain (the kernel gives their
// text), reporting those that do not parse in tv.
func parseRules(f nft.Family, chains []*nft.Chain, tv *Table) map[string][]nft.Rule {
	parsed := make([][]nft.Rule, len(chains))
	problems := make([][]string, len(chains))
	eachPart(partsOf(len(chains)), func(_ int, p part) {
		for ci := p.lo; ci < p.hi; ci++ {
			c := chains[ci]
			rules := make([]nft.Rule, len(c.Rules))
			for i, r := range c.Rules {
				pr, err := parseRule(f, r)
				if err != nil {
					problems[ci] = append(problems[ci], fmt.Sprintf("chain %s rule %d: %v", c.Name, i+1, err))
					continue
				}
				rules[i] = pr
			}
			parsed[ci] = rules
		}
	})
	out := make(map[string][]nft.Rule, len(chains))
	for i, c := range chains {
		tv.Rules += len(c.Rules)
		tv.Problems = append(tv.Problems, problems[i]...)
		out[c.Name] = parsed[i]
	}
	return out
}

// prepareMaps makes the maps rules index into (endpoint and
// endpoint-chain maps) ready for concurrent lookups before the chains are
// followed in parallel.
func prepareMaps(t *nft.Table, rules map[string][]nft.Rule) {
	done := map[string]bool{}
	for _, rs := range rules {
		for _, r := range rs {
			for _, st := range r.Stmts {
				var name string
				switch st := st.(type) {
				case nft.DNATToEndpoint:
					name = st.Map
				case nft.NumgenVmap:
					name = st.Map
				default:
					continue
				}
				if s := t.Sets.Get(name); s != nil && !done[name] {
					s.PrepareConcurrentGets()
					done[name] = true
				}
			}
		}
	}
}

// unreferencedChains reports the Service chains nothing jumps to: left
// over. referenced holds the chains the dispatch sets send traffic to.
func unreferencedChains(t *nft.Table, chains []*nft.Chain, rules map[string][]nft.Rule, referenced map[string]bool) []string {
	for name, s := range t.Sets.All() {
		if s.Verdict && !isDispatchSet(name) {
			s.Each(func(e nft.Element) {
				if e.Verdict != nil && e.Verdict.Chain != "" {
					referenced[e.Verdict.Chain] = true
				}
			})
		}
	}
	for _, rs := range rules {
		for _, r := range rs {
			for _, st := range r.Stmts {
				if vs, ok := st.(nft.VerdictStmt); ok && vs.Chain != "" {
					referenced[vs.Chain] = true
				}
			}
		}
	}
	var problems []string
	for _, c := range chains {
		if _, _, named := chainIdentity(c.Name); named && !referenced[c.Name] {
			problems = append(problems, fmt.Sprintf("chain %s: nothing jumps to it", c.Name))
		}
	}
	return problems
}

// frontend adds the frontend of one dispatch element to its Service port.
func (v *viewer) frontend(w *resolver, d dispatch, clusterIPs *nft.Set) {
	f, s, e, k, nodePort, reject, chain := w.t.Family, d.set, d.e, d.key, d.nodePort, d.reject, d.chain
	sp, kind := v.port(f, k, d.named)
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

func parseRule(f nft.Family, r nft.Rule) (nft.Rule, error) {
	if len(r.Stmts) == 1 {
		if o, ok := r.Stmts[0].(nft.Opaque); ok {
			return nft.ParseRule(f, o.Text)
		}
	}
	return r, nil
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
