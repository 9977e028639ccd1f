package nftrules

import (
	"maps"
	"reflect"

	"github.com/nftproxy/nftproxy/proxier/model"
)

// Build returns the ruleset for a desired state. It is pure and
// deterministic: the same State always yields the same Ruleset.
func Build(st *model.State) *Ruleset { return NewBuilder().Build(st) }

// Builder builds rulesets incrementally. It remembers the fragment each
// service port produced, keyed by the *model.ServicePort, so a new State
// that shares most ServicePort values with the previous one costs only the
// changed service ports. The proxier treats ServicePorts as immutable: a
// changed service port is a new value. The result is always equal to
// Build(st).
//
// Successive rulesets share unchanged chains and element groups; they must
// not be modified by callers.
type Builder struct {
	last   *Ruleset
	config model.State // st without Services: what every fragment depends on
	frags  map[*model.ServicePort]*memo
	gen    uint64 // Build count, to find service ports that are gone
}

// memo is what one service port produced, and when it was last seen.
type memo struct {
	gen      uint64
	byFamily map[Family]*fragment
}

// NewBuilder returns a Builder with nothing built yet.
func NewBuilder() *Builder { return &Builder{} }

// Build returns the ruleset of st.
func (b *Builder) Build(st *model.State) *Ruleset {
	cfg := *st
	cfg.Services = nil
	if b.last == nil || !reflect.DeepEqual(cfg, b.config) {
		b.reset(cfg)
	}
	rs := b.last.shallowCopy()
	rs.parent = b.last
	rs.delta = map[Family]*tableDelta{}
	for f := range rs.Tables {
		rs.delta[f] = newTableDelta()
	}
	b.gen++
	var added []*model.ServicePort
	for _, sp := range st.Services {
		if m, ok := b.frags[sp]; ok {
			m.gen = b.gen
		} else {
			added = append(added, sp)
		}
	}
	for sp, m := range b.frags {
		if m.gen != b.gen {
			for f, fr := range m.byFamily {
				rs.removeFragment(f, ServiceChainName(sp.Name), fr)
			}
			delete(b.frags, sp)
		}
	}
	for _, sp := range added {
		m := &memo{gen: b.gen, byFamily: map[Family]*fragment{}}
		for _, f := range FamiliesOf(st) {
			if fr := serviceFragment(st, sp, f); fr != nil {
				m.byFamily[f] = fr
				rs.addFragment(f, ServiceChainName(sp.Name), fr)
			}
		}
		b.frags[sp] = m
	}
	b.last = rs
	return rs
}

// reset forgets every fragment and starts again from the skeleton.
func (b *Builder) reset(cfg model.State) {
	b.config = cfg
	b.frags = map[*model.ServicePort]*memo{}
	b.last = NewRuleset()
	for _, f := range FamiliesOf(&cfg) {
		t := b.last.Table(f)
		buildSkeleton(t, &cfg)
		// Keys several service ports contribute (a pod behind several
		// Services, a multi-port Service's ClusterIP) are counted.
		t.Sets[SetHairpin].refs = map[string]int{}
		t.Sets[SetClusterIPs].refs = map[string]int{}
	}
}

// shallowCopy returns a ruleset sharing chains and element groups with rs,
// whose maps can be changed without changing rs. Sets are copied when first
// changed (see Table.mutableSet).
func (rs *Ruleset) shallowCopy() *Ruleset {
	out := NewRuleset()
	for f, t := range rs.Tables {
		out.Tables[f] = &Table{
			Family: t.Family, Name: t.Name,
			Chains: maps.Clone(t.Chains),
			Sets:   maps.Clone(t.Sets),
			copied: map[string]bool{},
		}
	}
	return out
}

// mutableSet returns the named set, copying it first if it is still shared
// with the ruleset this one was copied from. It creates endpoint maps on
// first use.
func (t *Table) mutableSet(name string) *Set {
	s, ok := t.Sets[name]
	if !ok {
		if p, _, isEndpointMap := parseEndpointMapName(name); isEndpointMap {
			s = newEndpointMap(t.Family, p, name)
		} else {
			s = newEndpointChainsMap(name)
		}
		s.groups = &ownerGroups{}
		t.Sets[name] = s
		t.copied[name] = true
		return s
	}
	if !t.copied[name] {
		c := *s
		c.groups = s.groups.fork()
		c.index = nil
		s = &c
		t.Sets[name] = s
		t.copied[name] = true
	}
	return s
}

func (rs *Ruleset) addFragment(f Family, owner string, fr *fragment) {
	t, d := rs.Tables[f], rs.delta[f]
	d.owners[owner] = true
	for _, c := range fr.chains {
		t.Chains[c.Name] = c
		d.chains[c.Name] = true
	}
	for _, s := range fr.sets {
		t.Sets[s.Name] = s
		d.sets[s.Name] = true
	}
	for name, els := range fr.elements {
		d.sets[name] = true
		s := t.mutableSet(name)
		s.groups.set(owner, els)
		if s.refs != nil {
			for _, e := range els {
				s.refs[e.KeyString()]++
			}
		}
	}
}

func (rs *Ruleset) removeFragment(f Family, owner string, fr *fragment) {
	t, d := rs.Tables[f], rs.delta[f]
	d.owners[owner] = true
	for _, c := range fr.chains {
		delete(t.Chains, c.Name)
		d.chains[c.Name] = true
	}
	for _, s := range fr.sets {
		delete(t.Sets, s.Name)
		d.sets[s.Name] = true
	}
	for name, els := range fr.elements {
		d.sets[name] = true
		s := t.mutableSet(name)
		s.groups.del(owner)
		if s.refs != nil {
			for _, e := range els {
				k := e.KeyString()
				if s.refs[k]--; s.refs[k] <= 0 {
					delete(s.refs, k)
				}
			}
		}
		if isIndexMap(s) && s.groups.len() == 0 {
			delete(t.Sets, name) // the shard's last service port is gone
		}
	}
}
