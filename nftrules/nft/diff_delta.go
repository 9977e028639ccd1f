package nft

import (
	"maps"
	"slices"
	"sort"
)

// diffDelta is Diff for a desired ruleset a Builder derived from live: it
// looks only at the chains, sets and element groups the Builder changed,
// so one changed Service costs the same among 10 or 10,000. The result is
// the one Diff's general path would compute.
func diffDelta(live, desired *Ruleset) *Transaction {
	tx := &Transaction{}
	var tail []Op
	for _, f := range desired.SortedFamilies() {
		d := desired.delta[f]
		have, want := live.Tables[f], desired.Tables[f]
		if d == nil || have == nil {
			continue
		}
		for _, name := range slices.Sorted(maps.Keys(d.sets)) {
			hs, ws := have.Sets.Get(name), want.Sets.Get(name)
			switch {
			case hs == nil && ws != nil:
				tx.Ops = append(tx.Ops, Op{Kind: OpAddSet, Family: f, Set: ws})
				tx.Ops = appendElementOps(tx.Ops, f, nil, ws)
			case hs != nil && ws == nil:
				tail = append(tail, Op{Kind: OpDelSet, Family: f, Set: hs})
			case hs != nil && ws != nil && !ws.Dynamic:
				add, del := diffOwners(hs, ws, d.owners)
				if len(del) > 0 {
					tx.Ops = append(tx.Ops, Op{Kind: OpDelElements, Family: f, Set: ws, Elements: del})
				}
				if len(add) > 0 {
					tx.Ops = append(tx.Ops, Op{Kind: OpAddElements, Family: f, Set: ws, Elements: add})
				}
			}
		}
		for _, name := range slices.Sorted(maps.Keys(d.chains)) {
			hc, wc := have.Chains.Get(name), want.Chains.Get(name)
			switch {
			case wc != nil && hc == nil:
				tx.Ops = append(tx.Ops, Op{Kind: OpAddChain, Family: f, Chain: wc})
			case wc != nil && hc != wc && !sameRules(f, hc, wc):
				tx.Ops = append(tx.Ops, Op{Kind: OpFlushChain, Family: f, Chain: wc})
			case wc == nil && hc != nil:
				tail = append(tail, Op{Kind: OpFlushChain, Family: f, Chain: hc}, Op{Kind: OpDelChain, Family: f, Chain: hc})
				continue
			default:
				continue
			}
			for i := range wc.Rules {
				tx.Ops = append(tx.Ops, Op{Kind: OpAddRule, Family: f, Chain: wc, Rule: &wc.Rules[i]})
			}
		}
	}
	tx.Ops = append(tx.Ops, tail...)
	sort.SliceStable(tx.Ops, func(i, j int) bool { return phase(tx.Ops[i].Kind) < phase(tx.Ops[j].Kind) })
	return tx
}

// diffOwners diffs the element groups of the given owners only.
func diffOwners(have, want *Set, owners map[string]bool) (add, del []Element) {
	var m elementMerger
	for _, o := range slices.Sorted(maps.Keys(owners)) {
		hg, _ := have.groups.get(o)
		wg, _ := want.groups.get(o)
		if !sameGroup(hg, wg) {
			m.merge(want, hg.elements(have), wg.elements(want))
		}
	}
	return m.add, m.del
}

// elementMerger collects the element changes of several owners of one
// set. Owners may share keys (several ports of one Service share its
// ClusterIP and pods): the kernel holds such a key once, so it is deleted
// once (and only when no owner keeps it) and added once.
type elementMerger struct {
	add, del       []Element
	added, deleted map[string]bool
}

func (m *elementMerger) merge(want *Set, have, wantGroup []Element) {
	if m.added == nil {
		m.added, m.deleted = map[string]bool{}, map[string]bool{}
	}
	a, d := diffSlices(have, wantGroup)
	for _, e := range d {
		k := e.KeyString()
		if !m.deleted[k] && !want.holds(e.Key) {
			m.deleted[k] = true
			m.del = append(m.del, e)
		}
	}
	for _, e := range a {
		if k := e.KeyString(); !m.added[k] {
			m.added[k] = true
			m.add = append(m.add, e)
		}
	}
}
