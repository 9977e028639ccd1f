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
	"github.com/nftproxy/nftproxy/proxier/model"
)

// DispatchKey is the key of a dispatch element: a Service port's cluster IP,
// protocol and port.
type DispatchKey struct {
	Addr  netip.Addr
	Proto nftrules.Protocol
	Port  uint16
}

// Names tells which Service port a dispatch key belongs to. The kernel
// records the name of a Service port with endpoints (its chain name), but
// not of one without (its dispatch element jumps to the shared reject
// chain); Names fills that gap when the API objects are known.
type Names map[DispatchKey]model.ServicePortName

// NamesOf returns the names of every Service port of a State.
func NamesOf(st *model.State) Names {
	n := Names{}
	for _, sp := range st.Services {
		p, ok := nftrules.ProtocolOf(sp.Protocol)
		if !ok {
			continue
		}
		for _, ip := range sp.ClusterIPs {
			n[DispatchKey{Addr: ip, Proto: p, Port: sp.Port}] = sp.Name
		}
	}
	return n
}

// FromRuleset reconstructs the per-Service view of a ruleset: a live one
// (rules as text, as Reconciler.ReadLive returns it) or a built one. names
// may be nil. It never fails: whatever does not fit our layout is reported
// in Problems.
func FromRuleset(rs *nftrules.Ruleset, names Names) *Dump {
	v := &viewer{names: names, ports: map[string]*ServicePort{}}
	d := &Dump{SchemaVersion: SchemaVersion, Tables: []Table{}, Services: []ServicePort{}}
	for _, f := range rs.SortedFamilies() {
		d.Tables = append(d.Tables, v.table(rs.Tables[f]))
	}
	for _, sp := range v.ports {
		slices.SortFunc(sp.Families, func(a, b FamilyPort) int {
			return cmp.Or(cmp.Compare(familyOrder(a.Family), familyOrder(b.Family)), strings.Compare(a.ClusterIP, b.ClusterIP))
		})
		d.Services = append(d.Services, *sp)
	}
	sortServicePorts(d.Services)
	return d
}

func familyOrder(f string) int { return slices.Index(nftrules.Families, nftrules.Family(f)) }

// sortServicePorts orders named ports by namespace, name, port name and
// protocol, then unnamed ones by port and address.
func sortServicePorts(sps []ServicePort) {
	slices.SortFunc(sps, func(a, b ServicePort) int {
		an, bn := a.Name == "", b.Name == ""
		if an != bn {
			if an {
				return 1
			}
			return -1
		}
		c := cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name),
			strings.Compare(a.PortName, b.PortName), strings.Compare(a.Protocol, b.Protocol), cmp.Compare(a.Port, b.Port))
		if c != 0 || len(a.Families) == 0 || len(b.Families) == 0 {
			return c
		}
		return strings.Compare(a.Families[0].Family+a.Families[0].ClusterIP, b.Families[0].Family+b.Families[0].ClusterIP)
	})
}

type viewer struct {
	names Names
	// ports by key: the service chain name (shared by both families) for
	// named ports, a dispatch key rendering for unnamed ones.
	ports map[string]*ServicePort
}

// port returns the entry of the Service port a dispatch element belongs to.
// chain is the service chain the element jumps to ("" for a port without
// endpoints).
func (v *viewer) port(f nftrules.Family, k DispatchKey, chain string) *ServicePort {
	var sp *ServicePort
	if name, ok := v.names[k]; ok {
		sp = v.entry(nftrules.ServiceChainName(name))
		sp.Namespace, sp.Name, sp.PortName = name.Namespace, name.Name, name.Port
		sp.NameTruncated = false
	} else if chain != "" {
		sp = v.entry(chain)
		if sp.Name == "" {
			sp.Namespace, sp.Name, sp.PortName, sp.NameTruncated = parseChainName(chain)
		}
	} else {
		sp = v.entry(fmt.Sprintf("?%s %s %s %d", f, k.Addr, k.Proto, k.Port))
	}
	sp.Protocol = strings.ToUpper(k.Proto.String())
	sp.Port = k.Port
	return sp
}

func (v *viewer) entry(key string) *ServicePort {
	sp, ok := v.ports[key]
	if !ok {
		sp = &ServicePort{Families: []FamilyPort{}}
		v.ports[key] = sp
	}
	return sp
}

// parseChainName recovers namespace, name and port name from a service
// chain name "svc-<hash>-ns/name/proto/port". truncated is set when the
// name was cut (nftrules keeps at most 96 characters of it).
func parseChainName(chain string) (ns, name, port string, truncated bool) {
	rest, ok := strings.CutPrefix(chain, "svc-")
	if !ok || len(rest) < 9 || rest[8] != '-' {
		return "", chain, "", true
	}
	parts := strings.SplitN(rest[9:], "/", 4)
	if len(parts) == 4 {
		n := model.ServicePortName{NamespacedName: types.NamespacedName{Namespace: parts[0], Name: parts[1]}, Port: parts[3], Protocol: v1.Protocol(strings.ToUpper(parts[2]))}
		if nftrules.ServiceChainName(n) == chain {
			return parts[0], parts[1], parts[3], false
		}
	}
	parts = append(parts, "", "", "")
	return parts[0], parts[1], parts[3], true
}

func (v *viewer) table(t *nftrules.Table) Table {
	f := t.Family
	tv := Table{Family: string(f), Name: t.Name, Chains: len(t.Chains), Sets: len(t.Sets)}
	parsed := map[string][]nftrules.Rule{} // chain -> typed rules (nil entry: unreadable rule)
	for _, c := range t.SortedChains() {
		tv.Rules += len(c.Rules)
		rules := make([]nftrules.Rule, len(c.Rules))
		for i, r := range c.Rules {
			pr, err := parseRule(f, r)
			if err != nil {
				tv.Problems = append(tv.Problems, fmt.Sprintf("chain %s rule %d: %v", c.Name, i+1, err))
				continue
			}
			rules[i] = pr
		}
		parsed[c.Name] = rules
	}
	for _, s := range t.SortedSets() {
		tv.Elements += s.Len()
		if len(s.Key) == 0 {
			tv.Problems = append(tv.Problems, fmt.Sprintf("set %s has a type nftproxy does not use", s.Name))
		}
	}
	tv.Masquerade = masqueradeOf(parsed[nftrules.ChainServices])

	referenced := map[string]bool{}
	used := map[string]map[string]bool{} // endpoint map -> keys used
	if s, ok := t.Sets[nftrules.SetServiceIPs]; ok && s.Verdict {
		for _, e := range s.SortedElements() {
			k, ok := dispatchKey(e)
			if !ok {
				tv.Problems = append(tv.Problems, fmt.Sprintf("@%s element %s: unexpected key", s.Name, e.KeyString()))
				continue
			}
			chain := ""
			if e.Verdict != nil && e.Verdict.Kind == nftrules.Goto {
				chain = e.Verdict.Chain
			}
			sp := v.port(f, k, chain)
			fp := FamilyPort{Family: string(f), ClusterIP: k.Addr.String(), Status: StatusActive, Chain: chain, Endpoints: []Endpoint{}}
			if chain == "" {
				sp.Problems = append(sp.Problems, fmt.Sprintf("%s %s: @%s verdict is %q, not a goto to a service chain", f, k.Addr, s.Name, e.ValueString()))
			} else {
				referenced[chain] = true
				v.endpoints(t, parsed, k, &fp, sp, used)
			}
			sp.Families = append(sp.Families, fp)
		}
	}
	if s, ok := t.Sets[nftrules.SetNoEndpointServices]; ok && s.Verdict {
		for _, e := range s.SortedElements() {
			k, ok := dispatchKey(e)
			if !ok {
				tv.Problems = append(tv.Problems, fmt.Sprintf("@%s element %s: unexpected key", s.Name, e.KeyString()))
				continue
			}
			sp := v.port(f, k, "")
			sp.Families = append(sp.Families, FamilyPort{Family: string(f), ClusterIP: k.Addr.String(), Status: StatusNoEndpoints, Endpoints: []Endpoint{}})
			if e.Verdict == nil || e.Verdict.Kind != nftrules.Goto || e.Verdict.Chain != nftrules.ChainReject {
				sp.Problems = append(sp.Problems, fmt.Sprintf("%s %s: @%s verdict is %q, want goto %s", f, k.Addr, s.Name, e.ValueString(), nftrules.ChainReject))
			}
		}
	}
	// A service chain nothing jumps to is left over (other layouts may
	// reach it from other maps or rules than @service-ips).
	for _, s := range t.Sets {
		if s.Verdict {
			for _, e := range s.Elements() {
				if e.Verdict != nil && e.Verdict.Chain != "" {
					referenced[e.Verdict.Chain] = true
				}
			}
		}
	}
	for _, rules := range parsed {
		for _, r := range rules {
			for _, st := range r.Stmts {
				if vs, ok := st.(nftrules.VerdictStmt); ok && vs.Chain != "" {
					referenced[vs.Chain] = true
				}
			}
		}
	}
	for _, c := range t.SortedChains() {
		if strings.HasPrefix(c.Name, "svc-") && !referenced[c.Name] {
			tv.Problems = append(tv.Problems, fmt.Sprintf("chain %s: nothing jumps to it", c.Name))
		}
	}
	for _, s := range t.SortedSets() {
		if !strings.HasPrefix(s.Name, "endpoints-") || len(s.Key) == 0 {
			continue
		}
		if orphans := s.Len() - len(used[s.Name]); orphans > 0 {
			tv.Problems = append(tv.Problems, fmt.Sprintf("@%s holds %d entries no service chain uses", s.Name, orphans))
		}
	}
	return tv
}

func parseRule(f nftrules.Family, r nftrules.Rule) (nftrules.Rule, error) {
	if len(r.Stmts) == 1 {
		if o, ok := r.Stmts[0].(nftrules.Opaque); ok {
			return nftrules.ParseRule(f, o.Text)
		}
	}
	return r, nil
}

// endpoints fills fp from the service chain's dnat rule and the endpoint
// map entries it draws from.
func (v *viewer) endpoints(t *nftrules.Table, parsed map[string][]nftrules.Rule, k DispatchKey, fp *FamilyPort, sp *ServicePort, used map[string]map[string]bool) {
	problem := func(format string, args ...any) {
		sp.Problems = append(sp.Problems, fmt.Sprintf("%s %s: ", t.Family, k.Addr)+fmt.Sprintf(format, args...))
	}
	rules, ok := parsed[fp.Chain]
	if !ok {
		problem("chain %s does not exist", fp.Chain)
		return
	}
	var dnat *nftrules.DNATToEndpoint
	for i, r := range rules {
		if r.Stmts == nil {
			problem("chain %s rule %d is not nftproxy's", fp.Chain, i+1)
			continue
		}
		for j, s := range r.Stmts {
			if d, ok := s.(nftrules.DNATToEndpoint); ok {
				if j == 0 || r.Stmts[j-1] != (nftrules.MatchL4Proto{Proto: k.Proto}) {
					problem("chain %s: dnat without a meta l4proto %s match", fp.Chain, k.Proto)
				}
				dnat = &d
			}
		}
	}
	if dnat == nil {
		problem("chain %s has no dnat rule", fp.Chain)
		return
	}
	fp.Map, fp.FirstKey = dnat.Map, dnat.Offset
	m, ok := t.Sets[dnat.Map]
	if !ok {
		problem("endpoint map @%s does not exist", dnat.Map)
		return
	}
	if used[m.Name] == nil {
		used[m.Name] = map[string]bool{}
	}
	for i := uint32(0); i < dnat.Count; i++ {
		key := nftrules.Element{Key: []nftrules.Value{nftrules.NumValue(dnat.Offset + i)}}.KeyString()
		e, ok := m.Lookup(key)
		if !ok {
			problem("@%s has no entry %s (want %d..%d)", m.Name, key, dnat.Offset, dnat.Offset+dnat.Count-1)
			continue
		}
		used[m.Name][key] = true
		if len(e.Data) != 2 || !e.Data[0].Addr.IsValid() || e.Data[1].Num > 0xffff {
			problem("@%s entry %s has value %q", m.Name, key, e.ValueString())
			continue
		}
		fp.Endpoints = append(fp.Endpoints, Endpoint{Address: e.Data[0].Addr.String(), Port: uint16(e.Data[1].Num)})
	}
}

func dispatchKey(e nftrules.Element) (DispatchKey, bool) {
	if len(e.Key) != 3 || !e.Key[0].Addr.IsValid() || e.Key[1].Num > 0xff || e.Key[2].Num > 0xffff {
		return DispatchKey{}, false
	}
	return DispatchKey{Addr: e.Key[0].Addr, Proto: nftrules.Protocol(e.Key[1].Num), Port: uint16(e.Key[2].Num)}, true
}

// masqueradeOf reads the masquerade policy from the services chain: a rule
// "[ip saddr != CIDR ...] ip daddr @cluster-ips jump mark-for-masquerade".
func masqueradeOf(rules []nftrules.Rule) Masquerade {
	for _, r := range rules {
		if r.Stmts == nil {
			return Masquerade{Mode: MasqueradeUnknown}
		}
	}
	for _, r := range rules {
		if len(r.Stmts) < 2 || r.Stmts[len(r.Stmts)-1] != nftrules.JumpTo(nftrules.ChainMarkForMasquerade) {
			continue
		}
		m := Masquerade{Mode: MasqueradeAll}
		for _, s := range r.Stmts[:len(r.Stmts)-1] {
			switch s := s.(type) {
			case nftrules.MatchPrefix:
				if s.Field != nftrules.FieldSaddr || !s.Negate {
					return Masquerade{Mode: MasqueradeUnknown}
				}
				m.Mode = MasqueradeOffCluster
				m.ClusterCIDRs = append(m.ClusterCIDRs, s.Prefix.String())
			case nftrules.SetLookup:
				if s.Set != nftrules.SetClusterIPs {
					return Masquerade{Mode: MasqueradeUnknown}
				}
			default:
				return Masquerade{Mode: MasqueradeUnknown}
			}
		}
		return m
	}
	return Masquerade{Mode: MasqueradeNone}
}
