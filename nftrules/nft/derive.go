package nft

import "maps"

// Derivation makes a ruleset from another by changes, the way a Builder
// goes from one Build to the next. The derived ruleset shares every chain,
// set and element group it does not change with its parent (a set is
// copied when first changed, and only its small overlay of changed groups:
// see ownerGroups), so a derivation that changes one Service costs the
// same among 10 or 10,000. It records what it changed, so that
// Diff(parent, derived) looks there only.
//
// Neither the parent nor the derived ruleset may be changed otherwise: both
// share their objects with each other.
type Derivation struct {
	rs *Ruleset
	// copied names, per family, the sets already copied from the parent.
	copied map[Family]map[string]bool
}

// tableDelta names what a Derivation changed in one table.
type tableDelta struct {
	owners map[string]bool // element groups added or removed
	chains map[string]bool // chains added, removed or replaced
	sets   map[string]bool // sets added, removed, or with changed groups
}

// Derive starts a ruleset derived from rs; see Derivation.
func (rs *Ruleset) Derive() *Derivation {
	d := &Derivation{rs: NewRuleset(), copied: map[Family]map[string]bool{}}
	d.rs.parent = rs
	d.rs.delta = map[Family]*tableDelta{}
	for f, t := range rs.Tables {
		d.rs.Tables[f] = &Table{
			Family: t.Family, Name: t.Name,
			Chains: maps.Clone(t.Chains),
			Sets:   maps.Clone(t.Sets),
		}
		d.rs.delta[f] = &tableDelta{owners: map[string]bool{}, chains: map[string]bool{}, sets: map[string]bool{}}
		d.copied[f] = map[string]bool{}
	}
	return d
}

// Ruleset returns the derived ruleset. Only families of the parent exist.
func (d *Derivation) Ruleset() *Ruleset { return d.rs }

// PutChain adds or replaces a chain of family f.
func (d *Derivation) PutChain(f Family, c *Chain) {
	d.rs.Tables[f].Chains[c.Name] = c
	d.rs.delta[f].chains[c.Name] = true
}

// DeleteChain removes a chain of family f.
func (d *Derivation) DeleteChain(f Family, name string) {
	delete(d.rs.Tables[f].Chains, name)
	d.rs.delta[f].chains[name] = true
}

// PutSet adds or replaces a set of family f, with its elements.
func (d *Derivation) PutSet(f Family, s *Set) {
	d.rs.Tables[f].Sets[s.Name] = s
	d.rs.delta[f].sets[s.Name] = true
}

// DeleteSet removes a set of family f.
func (d *Derivation) DeleteSet(f Family, name string) {
	delete(d.rs.Tables[f].Sets, name)
	d.rs.delta[f].sets[name] = true
}

// SetGroup makes els the elements owner contributes to a set of family f,
// replacing what it contributed before. newSet makes the (empty) set when
// the ruleset has none of that name. els is kept, not copied.
func (d *Derivation) SetGroup(f Family, set, owner string, els []Element, newSet func(Family, string) *Set) {
	s := d.mutableSet(f, set, newSet)
	d.rs.delta[f].owners[owner] = true
	if s.SharedKeys {
		if prev, ok := s.groups.get(owner); ok {
			s.refs.remove(prev)
		}
		s.refs.add(els)
	}
	s.groups.set(owner, els)
}

// DeleteGroup removes what owner contributes to a set of family f and
// returns the number of owners the set has left.
func (d *Derivation) DeleteGroup(f Family, set, owner string) int {
	s := d.mutableSet(f, set, nil)
	d.rs.delta[f].owners[owner] = true
	if prev, ok := s.groups.get(owner); ok && s.SharedKeys {
		s.refs.remove(prev)
	}
	s.groups.del(owner)
	return s.groups.len()
}

// mutableSet returns the named set, copying it first if it is still shared
// with the parent, or making it with newSet.
func (d *Derivation) mutableSet(f Family, name string, newSet func(Family, string) *Set) *Set {
	t := d.rs.Tables[f]
	d.rs.delta[f].sets[name] = true
	copied := d.copied[f]
	s, ok := t.Sets[name]
	if !ok {
		s = newSet(f, name)
		s.groups = &ownerGroups{}
		t.Sets[name] = s
		copied[name] = true
	} else if !copied[name] {
		c := *s
		c.groups = s.groups.fork()
		c.refs = s.refs.fork()
		c.index = nil
		s = &c
		t.Sets[name] = s
		copied[name] = true
	}
	if s.SharedKeys && s.refs == nil {
		s.refs = &keyCounts{}
	}
	return s
}
