package nft

import (
	"maps"
	"slices"
	"sort"
)

// OpKind is a verb of a transaction.
type OpKind int

const (
	OpAddTable OpKind = iota + 1
	OpDelTable
	OpAddSet
	OpAddChain
	OpFlushChain
	OpAddRule
	OpDelElements
	OpAddElements
	OpDelChain
	OpDelSet
)

var opNames = map[OpKind]string{
	OpAddTable: "add table", OpDelTable: "delete table", OpAddSet: "add set",
	OpAddChain: "add chain", OpFlushChain: "flush chain", OpAddRule: "add rule",
	OpDelElements: "delete elements", OpAddElements: "add elements", OpDelChain: "delete chain",
	OpDelSet: "delete set",
}

func (k OpKind) String() string { return opNames[k] }

// Op is one verb of a transaction on one table.
type Op struct {
	Kind     OpKind
	Family   Family
	Chain    *Chain    // add/flush/delete chain; the chain a rule is added to
	Rule     *Rule     // add rule
	Set      *Set      // add set; the set elements belong to
	Elements []Element // add/delete elements (see ElementList)
	// packed holds the elements of an add to an empty set (a cold sync)
	// as the Builder keeps them (elemGroup), to be encoded without being
	// decoded: Elements would be ~100 bytes more per element, allocated
	// for the length of the sync.
	packed []*elemGroup
}

// Len returns the number of elements of an element op.
func (op Op) Len() int {
	n := len(op.Elements)
	for _, g := range op.packed {
		n += g.len()
	}
	return n
}

// ElementList returns the elements of an element op: Elements, and those
// still packed, decoded (for the fake kernel and tests).
func (op Op) ElementList() []Element {
	if op.packed == nil {
		return op.Elements
	}
	out := append(make([]Element, 0, op.Len()), op.Elements...)
	for _, g := range op.packed {
		out = g.appendElements(out, op.Set)
	}
	return out
}

// Transaction is an ordered list of verbs applied atomically. The order is
// the one the kernel needs within one batch: tables, sets, chains, rules,
// element deletions before additions (a changed element is deleted and
// re-added), and chain deletions last, after every reference to them (map
// elements, jump rules) has been removed earlier in the same batch.
type Transaction struct {
	Ops []Op
}

// changesSkeleton reports whether the transaction changes more than set
// elements.
func (tx *Transaction) changesSkeleton() bool {
	for _, op := range tx.Ops {
		if op.Kind != OpAddElements && op.Kind != OpDelElements {
			return true
		}
	}
	return false
}

// Empty reports whether the transaction does nothing.
func (tx *Transaction) Empty() bool { return len(tx.Ops) == 0 }

// Objects counts the kernel objects the transaction touches: every op
// counts one, except element ops which count their elements.
func (tx *Transaction) Objects() int {
	n := 0
	for _, op := range tx.Ops {
		if op.Kind == OpAddElements || op.Kind == OpDelElements {
			n += op.Len()
		} else {
			n++
		}
	}
	return n
}

// Diff returns the minimal transaction that turns live into desired. Live
// may be nil or partial (nothing programmed yet). Only our tables are ever
// named in the result.
//
// Sets present on both sides and base chains are compared by shape; if one
// of them differs (a new nftproxy version changed the layout) the family's
// table is deleted and rebuilt within the same transaction, so traffic
// never sees a half-built table. Otherwise sets are added and deleted as
// needed, elements are diffed one by one, and a regular chain whose rules
// differ is flushed and refilled.
func Diff(live, desired *Ruleset) *Transaction {
	if live != nil && desired.parent == live && desired.delta != nil {
		return diffDelta(live, desired)
	}
	tx := &Transaction{}
	var tail []Op // chain deletions go last
	for _, f := range desired.SortedFamilies() {
		want := desired.Tables[f]
		var have *Table
		if live != nil {
			have = live.Tables[f]
		}
		if have != nil && !sameSkeleton(have, want) {
			tx.Ops = append(tx.Ops, Op{Kind: OpDelTable, Family: f})
			have = nil
		}
		if have == nil {
			have = &Table{Family: f, Name: want.Name}
			tx.Ops = append(tx.Ops, Op{Kind: OpAddTable, Family: f})
		}
		for _, s := range want.SortedSets() {
			if have.Sets.Get(s.Name) == nil {
				tx.Ops = append(tx.Ops, Op{Kind: OpAddSet, Family: f, Set: s})
			}
		}
		for _, s := range have.SortedSets() {
			if want.Sets.Get(s.Name) == nil {
				tail = append(tail, Op{Kind: OpDelSet, Family: f, Set: s})
			}
		}
		tail = append(tail, diffTable(tx, have, want)...)
	}
	if live != nil {
		for _, f := range live.SortedFamilies() {
			if _, ok := desired.Tables[f]; !ok {
				tx.Ops = append(tx.Ops, Op{Kind: OpDelTable, Family: f})
			}
		}
	}
	tx.Ops = append(tx.Ops, tail...)
	sort.SliceStable(tx.Ops, func(i, j int) bool { return phase(tx.Ops[i].Kind) < phase(tx.Ops[j].Kind) })
	return tx
}

// phase orders ops across tables; ops of one phase keep their order.
func phase(k OpKind) int {
	switch k {
	case OpDelTable:
		return 0
	case OpAddTable:
		return 1
	case OpAddSet:
		return 2
	case OpAddChain:
		return 3
	case OpFlushChain, OpAddRule:
		return 4
	case OpDelElements:
		return 5
	case OpAddElements:
		return 6
	case OpDelSet:
		// After the rules using the set were flushed, before the chains
		// its verdict elements point to are deleted.
		return 7
	}
	return 8 // OpDelChain
}

// sameSkeleton reports whether the sets both tables have are of the same
// shape and the base chains are the same (by hook), i.e. whether have can be
// updated in place.
func sameSkeleton(have, want *Table) bool {
	for name, ws := range want.Sets.All() {
		if hs := have.Sets.Get(name); hs != nil && !hs.SameShape(ws) {
			return false
		}
	}
	for name, wc := range want.Chains.All() {
		hc := have.Chains.Get(name)
		if hc == nil {
			if wc.Base != nil {
				return false
			}
			continue
		}
		if (hc.Base == nil) != (wc.Base == nil) || (hc.Base != nil && *hc.Base != *wc.Base) {
			return false
		}
	}
	for name, hc := range have.Chains.All() {
		if want.Chains.Get(name) == nil && hc.Base != nil {
			return false
		}
	}
	return true
}

// diffTable appends chain, rule and element ops to tx and returns the chain
// deletions, which must come after everything else. Chains and element
// groups shared by both sides (an unchanged service port) are skipped by
// identity; only what changed is rendered and compared.
func diffTable(tx *Transaction, have, want *Table) []Op {
	f := want.Family
	var changed []*Chain
	for name, wc := range want.Chains.All() {
		hc := have.Chains.Get(name)
		if hc != nil && (hc == wc || sameRules(f, hc, wc)) {
			continue
		}
		changed = append(changed, wc)
	}
	sortChains(changed)
	n := want.Sets.Len() * 2
	for _, wc := range changed {
		n += 1 + len(wc.Rules)
	}
	tx.Ops = slices.Grow(tx.Ops, n) // a cold sync: 30,000 ops at 10k Services
	for _, wc := range changed {
		if have.Chains.Get(wc.Name) != nil {
			tx.Ops = append(tx.Ops, Op{Kind: OpFlushChain, Family: f, Chain: wc})
		} else {
			tx.Ops = append(tx.Ops, Op{Kind: OpAddChain, Family: f, Chain: wc})
		}
		for i := range wc.Rules {
			tx.Ops = append(tx.Ops, Op{Kind: OpAddRule, Family: f, Chain: wc, Rule: &wc.Rules[i]})
		}
	}
	for _, name := range slices.Sorted(want.Sets.Keys()) {
		tx.Ops = appendElementOps(tx.Ops, f, have.Sets.Get(name), want.Sets.Get(name))
	}
	var gone []*Chain
	for name, hc := range have.Chains.All() {
		if want.Chains.Get(name) == nil {
			gone = append(gone, hc)
		}
	}
	sortChains(gone)
	var dels []Op
	for _, hc := range gone {
		// Flush first: a chain with rules cannot be deleted.
		dels = append(dels, Op{Kind: OpFlushChain, Family: f, Chain: hc}, Op{Kind: OpDelChain, Family: f, Chain: hc})
	}
	return dels
}

func sortChains(cs []*Chain) {
	sort.Slice(cs, func(i, j int) bool { return cs[i].Name < cs[j].Name })
}

func sameRules(f Family, a, b *Chain) bool {
	if len(a.Rules) != len(b.Rules) {
		return false
	}
	for i := range a.Rules {
		if ruleIdentity(f, a.Rules[i]) != ruleIdentity(f, b.Rules[i]) {
			return false
		}
	}
	return true
}

// appendElementOps appends the element ops that make have (nil: a new
// set) hold want's elements: deletions, then additions. An add to an empty
// set takes want's element groups still packed (Op.packed).
func appendElementOps(ops []Op, f Family, have, want *Set) []Op {
	if !want.Dynamic && (have == nil || have.empty()) {
		if groups, ok := want.packedGroups(); ok {
			if len(groups) > 0 {
				ops = append(ops, Op{Kind: OpAddElements, Family: f, Set: want, packed: groups})
			}
			return ops
		}
	}
	add, del := diffElements(have, want)
	if len(del) > 0 {
		ops = append(ops, Op{Kind: OpDelElements, Family: f, Set: want, Elements: del})
	}
	if len(add) > 0 {
		ops = append(ops, Op{Kind: OpAddElements, Family: f, Set: want, Elements: add})
	}
	return ops
}

// empty reports whether a set has no elements, without indexing them (Len
// would, for a set a Builder made).
func (s *Set) empty() bool {
	if s.raw != nil {
		return len(s.raw) == 0
	}
	return s.groupedLen() == 0
}

// packedGroups returns every element of an owner-grouped set once, as
// distinctElements lists them, in the groups that hold them: by owner
// (sorted), skipping empty groups. In a set whose owners share keys the
// distinct elements are copied into one new group (records, not
// Elements). ok is false for a set not grouped by owner, and for one whose
// owners share keys with some group not packed.
func (s *Set) packedGroups() (groups []*elemGroup, ok bool) {
	if !s.owned() {
		return nil, false
	}
	var owners []string
	s.groups.each(func(o string, g *elemGroup) {
		if g.len() > 0 {
			owners = append(owners, o)
		}
	})
	sort.Strings(owners)
	for _, o := range owners {
		g, _ := s.groups.get(o)
		if s.refs != nil && !g.isPacked() {
			return nil, false
		}
		groups = append(groups, g)
	}
	if s.refs == nil || len(groups) == 0 {
		return groups, true
	}
	kw, dw := s.recordWidths()
	out := &elemGroup{packed: make([]byte, 0, s.refs.len()*(kw+dw))}
	var verdicts []Verdict
	var seen map[string]bool
	var kb [80]byte
	for _, g := range groups {
		for i := 0; i < g.n; i++ {
			rec := g.packed[i*(kw+dw) : (i+1)*(kw+dw)]
			if k := append(append(kb[:0], 0), rec[:kw]...); s.refs.getBytes(k) > 1 {
				if seen[string(k)] {
					continue
				}
				if seen == nil {
					seen = map[string]bool{}
				}
				seen[string(k)] = true
			}
			out.packed = append(out.packed, rec...)
			if s.Verdict {
				verdicts = append(verdicts, *g.verdict(i))
			}
			out.n++
		}
	}
	if s.Verdict {
		out.verdicts = &verdicts
	}
	return []*elemGroup{out}, true
}

// diffElements returns the elements to add to and delete from have so that
// it equals want. An element whose value changed is in both lists.
func diffElements(have, want *Set) (add, del []Element) {
	if want.Dynamic {
		return nil, nil // filled and expired by the packet path
	}
	if have != nil && have.raw != nil {
		return diffRaw(have, want)
	}
	if have != nil && have.owned() && want.owned() {
		return diffGroups(have, want)
	}
	return diffElementsIndexed(have, want)
}

// diffElementsIndexed compares two sets through indexes of their elements
// by rendered key.
func diffElementsIndexed(have, want *Set) (add, del []Element) {
	var haveEls map[string]Element
	if have != nil {
		haveEls = have.Elements()
	}
	if len(haveEls) == 0 {
		// Nothing to compare with (a cold start): every element, once.
		return want.distinctElements(), nil
	}
	wantEls := want.transientIndex()
	for _, k := range slices.Sorted(maps.Keys(wantEls)) {
		w := wantEls[k]
		h, ok := haveEls[k]
		if ok && h.Equal(w) {
			continue
		}
		if ok {
			del = append(del, h)
		}
		add = append(add, w)
	}
	for _, k := range slices.Sorted(maps.Keys(haveEls)) {
		if _, ok := wantEls[k]; !ok {
			del = append(del, haveEls[k])
		}
	}
	return add, del
}

// diffGroups diffs two owner-grouped sets group by group, skipping groups
// both sides share. A key another owner still holds is not deleted (the
// kernel set holds it once); adding a key the kernel already has is
// harmless.
func diffGroups(have, want *Set) (add, del []Element) {
	var owners []string
	want.groups.each(func(o string, wg *elemGroup) {
		if hg, ok := have.groups.get(o); !ok || !sameGroup(hg, wg) {
			owners = append(owners, o)
		}
	})
	have.groups.each(func(o string, _ *elemGroup) {
		if _, ok := want.groups.get(o); !ok {
			owners = append(owners, o)
		}
	})
	sort.Strings(owners)
	var m elementMerger
	for _, o := range owners {
		hg, _ := have.groups.get(o)
		wg, _ := want.groups.get(o)
		m.merge(want, hg.elements(have), wg.elements(want))
	}
	return m.add, m.del
}

// sameGroup reports whether two rulesets share an owner's group (an
// unchanged service port), or both have none.
func sameGroup(a, b *elemGroup) bool { return a == b || (a.len() == 0 && b.len() == 0) }

// diffSlices compares two small element lists of one owner.
func diffSlices(have, want []Element) (add, del []Element) {
	h := make(map[string]Element, len(have))
	for _, e := range have {
		h[e.KeyString()] = e
	}
	w := make(map[string]bool, len(want))
	for _, e := range want {
		k := e.KeyString()
		w[k] = true
		if old, ok := h[k]; ok {
			if old.Equal(e) {
				continue
			}
			del = append(del, old)
		}
		add = append(add, e)
	}
	for _, e := range have {
		if k := e.KeyString(); !w[k] {
			w[k] = true // once, even if listed twice
			del = append(del, e)
		}
	}
	return add, del
}

// holds reports whether some group of a set whose keys owners share still
// holds key. For other sets keys belong to one owner: always false.
func (s *Set) holds(key []Value) bool {
	if s.refs == nil {
		return false
	}
	var kb [80]byte
	return s.refs.getBytes(s.refKey(kb[:0], key)) > 0
}

// transientIndex is Elements without keeping the map: a desired ruleset
// lives on as the last applied one, and an index of every element of a
// large set (200,000 at 10k Services × 10 endpoints) would stay with it.
func (s *Set) transientIndex() map[string]Element {
	if s.index != nil {
		return s.index
	}
	idx := make(map[string]Element, s.groupedLen())
	s.groups.each(func(_ string, g *elemGroup) {
		for _, e := range g.elements(s) {
			idx[e.KeyString()] = e
		}
	})
	return idx
}

// distinctElements lists every element of s once: by owner (sorted), in
// each owner's order. In sets whose owners share keys (refs) only a key
// counted more than once can repeat: the others are looked up in the
// counts by their rendering in a buffer, and only shared keys are kept
// to skip their repeats (at 10k Services x 10 endpoints the hairpin set's
// 100,000 keys, rendered and kept, were 8 MB of a cold sync's
// allocations).
func (s *Set) distinctElements() []Element {
	if !s.owned() {
		return s.SortedElements()
	}
	var owners []string
	s.groups.each(func(o string, _ *elemGroup) { owners = append(owners, o) })
	sort.Strings(owners)
	out := make([]Element, 0, s.groupedLen())
	var seen map[string]bool
	var kb [128]byte
	for _, o := range owners {
		g, _ := s.groups.get(o)
		if s.refs == nil {
			out = g.appendElements(out, s)
			continue
		}
		for _, e := range g.elements(s) {
			k := s.refKey(kb[:0], e.Key)
			if s.refs.getBytes(k) > 1 {
				if seen[string(k)] {
					continue
				}
				if seen == nil {
					seen = map[string]bool{}
				}
				seen[string(k)] = true
			}
			out = append(out, e)
		}
	}
	return out
}

// groupedLen counts the elements of all groups (keys shared between owners
// counted once per owner).
func (s *Set) groupedLen() int {
	n := 0
	s.groups.each(func(_ string, g *elemGroup) { n += g.len() })
	return n
}
