package nft

// Derivation makes a ruleset from another by changes, the way a Builder
// goes from one Build to the next. The derived ruleset shares every chain,
// set and element group it does not change with its parent (a set is
// copied when first changed, and only its small overlay of changed groups:
// see ownerGroups), and forks the tables' chains and sets (ByName): it
// copies no map of the size of the table, whatever it changes. A chain
// put back with the rules it had (a Service's endpoints changed, its
// chains did not) is no change. It records what it changed, so that
// Diff(parent, derived) looks there only.
//
// Neither the parent nor the derived ruleset may be changed otherwise: both
// share their objects with each other.
type Derivation struct {
	rs *Ruleset
	// copied names, per family, the sets already copied from the parent.
	copied map[Family]map[string]bool
	// chains are the chains put (nil: deleted) per family, applied to
	// the tables by Ruleset: a chain deleted and put back unchanged, as
	// a Builder does for a changed Service, is no change.
	chains map[Family]map[string]*Chain
	done   bool
}

// tableDelta names what a Derivation changed in one table.
type tableDelta struct {
	owners map[string]bool // element groups added or removed
	chains map[string]bool // chains added, removed or replaced
	sets   map[string]bool // sets added, removed, or with changed groups
}

// Derive starts a ruleset derived from rs; see Derivation.
func (rs *Ruleset) Derive() *Derivation {
	d := &Derivation{rs: NewRuleset(), copied: map[Family]map[string]bool{},
		chains: map[Family]map[string]*Chain{}}
	d.rs.parent = rs
	// rs is now diffed against its successors, no longer against its own
	// parent: dropping that link keeps a Builder's rulesets from
	// forming a chain back to its first.
	rs.parent = nil
	d.rs.delta = map[Family]*tableDelta{}
	for f, t := range rs.Tables {
		d.rs.Tables[f] = &Table{Family: t.Family, Name: t.Name, Chains: t.Chains.fork(), Sets: t.Sets.fork()}
		d.rs.delta[f] = &tableDelta{owners: map[string]bool{}, chains: map[string]bool{}, sets: map[string]bool{}}
		d.copied[f] = map[string]bool{}
		d.chains[f] = map[string]*Chain{}
	}
	return d
}

// settled drops what only Diff(parent, rs) reads, once rs is the applied
// ruleset: every later Diff starts from rs. The delta of a cold Build
// names every service port's chain and owner (~80 bytes per service
// port, held until the next Build otherwise). rs is returned.
func (rs *Ruleset) settled() *Ruleset {
	rs.parent, rs.delta = nil, nil
	return rs
}

// Ruleset returns the derived ruleset. Only families of the parent exist.
// No change may follow.
func (d *Derivation) Ruleset() *Ruleset {
	if d.done {
		return d.rs
	}
	d.done = true
	for f, put := range d.chains {
		t := d.rs.Tables[f]
		for name, c := range put {
			old := t.Chains.Get(name)
			if c == old || (c != nil && old != nil && sameChain(f, old, c)) {
				continue
			}
			t.Chains.Put(name, c) // nil deletes
			d.rs.delta[f].chains[name] = true
		}
	}
	return d.rs
}

// sameChain reports whether two chains are the same in the kernel.
func sameChain(f Family, a, b *Chain) bool {
	if (a.Base == nil) != (b.Base == nil) || (a.Base != nil && *a.Base != *b.Base) {
		return false
	}
	return sameRules(f, a, b)
}

// PutChain adds or replaces a chain of family f.
func (d *Derivation) PutChain(f Family, c *Chain) { d.chains[f][c.Name] = c }

// DeleteChain removes a chain of family f.
func (d *Derivation) DeleteChain(f Family, name string) { d.chains[f][name] = nil }

// PutSet adds or replaces a set of family f, with its elements.
func (d *Derivation) PutSet(f Family, s *Set) {
	d.rs.Tables[f].Sets.Put(s.Name, s)
	d.rs.delta[f].sets[s.Name] = true
}

// DeleteSet removes a set of family f.
func (d *Derivation) DeleteSet(f Family, name string) {
	d.rs.Tables[f].Sets.Delete(name)
	d.rs.delta[f].sets[name] = true
}

// SetGroup makes els the elements owner contributes to a set of family f,
// replacing what it contributed before. newSet makes the (empty) set when
// the ruleset has none of that name. els is kept packed (elemGroup), or
// as it is when its values do not fit the set's types: the caller must
// not change it.
func (d *Derivation) SetGroup(f Family, set, owner string, els []Element, newSet func(Family, string) *Set) {
	s := d.mutableSet(f, set, newSet)
	d.setGroup(f, s, owner, packGroup(s, els))
}

// SetPacked is SetGroup for elements a Packer collected.
func (d *Derivation) SetPacked(f Family, set, owner string, p *Packer, newSet func(Family, string) *Set) {
	s := d.mutableSet(f, set, newSet)
	d.setGroup(f, s, owner, p.group(s))
}

func (d *Derivation) setGroup(f Family, s *Set, owner string, g *elemGroup) {
	d.rs.delta[f].owners[owner] = true
	if s.SharedKeys {
		if prev, ok := s.groups.get(owner); ok {
			s.refs.remove(s, prev)
		}
		s.refs.add(s, g)
	}
	s.groups.set(owner, g)
}

// DeleteGroup removes what owner contributes to a set of family f and
// returns the number of owners the set has left.
func (d *Derivation) DeleteGroup(f Family, set, owner string) int {
	s := d.mutableSet(f, set, nil)
	d.rs.delta[f].owners[owner] = true
	if prev, ok := s.groups.get(owner); ok && s.SharedKeys {
		s.refs.remove(s, prev)
	}
	s.groups.del(owner)
	return s.groups.len()
}

// mutableSet returns the named set, copying it first if it is still shared
// with the parent, or making it with newSet.
func (d *Derivation) mutableSet(f Family, name string, newSet func(Family, string) *Set) *Set {
	d.rs.delta[f].sets[name] = true
	copied, sets := d.copied[f], &d.rs.Tables[f].Sets
	s := sets.Get(name)
	if s == nil {
		s = newSet(f, name)
		s.groups = &ownerGroups{}
		sets.Put(name, s)
		copied[name] = true
	} else if !copied[name] {
		c := *s
		c.groups = s.groups.fork()
		c.refs = s.refs.fork()
		c.index = nil
		s = &c
		sets.Put(name, s)
		copied[name] = true
	}
	if s.SharedKeys && s.refs == nil {
		s.refs = &keyCounts{}
	}
	return s
}
