package nftfake

import (
	"fmt"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/nftproxy/nftproxy/nftrules/nft"
)

// kernel is the fake's nftables state: our table of each family.
type kernel struct {
	tables map[nft.Family]*table
}

type table struct {
	chains map[string]*chain
	sets   map[string]*set
	// chainUses and setUses count the rules and verdict elements naming a
	// chain or set: the kernel's use counters, which refuse to delete an
	// object still in use.
	chainUses map[string]int
	setUses   map[string]int
}

type chain struct {
	base  *nft.BaseChain
	rules []rule
}

type rule struct {
	rule nft.Rule
	refs []ref
}

type set struct {
	shape *nft.Set // the type as committed, without elements
	elems map[string]nft.Element
}

// ref is an object a rule names, and how.
type ref struct {
	kind refKind
	name string
}

type refKind int

const (
	refChain  refKind = iota // jump or goto
	refLookup                // @set: any set or map
	refVmap                  // vmap @set: a verdict map
	refMap                   // map @set: a data map
	refDynset                // update @set: a set the packet path fills
)

// refsOf lists what a rule names, read from its nft rendering as the
// kernel would see it compiled: "@name" is a set, its kind given by the
// word before; "jump name" and "goto name" are chains. Reading the text
// rather than the statement types covers every statement, including
// Opaque ones.
func refsOf(f nft.Family, r nft.Rule) []ref {
	words := strings.Fields(r.Render(f))
	var out []ref
	for i, w := range words {
		prev := ""
		if i > 0 {
			prev = words[i-1]
		}
		switch {
		case strings.HasPrefix(w, "@"):
			kind := refLookup
			switch prev {
			case "vmap":
				kind = refVmap
			case "map":
				kind = refMap
			case "update", "add", "delete":
				kind = refDynset
			}
			out = append(out, ref{kind, w[1:]})
		case (w == "jump" || w == "goto") && i+1 < len(words):
			out = append(out, ref{refChain, words[i+1]})
		}
	}
	return out
}

// txn applies one transaction to the state in place and logs how to undo
// each change, so that a refused transaction is rolled back: the cost is
// that of the changes, not of the sets they touch.
type txn struct {
	k    *kernel
	undo []func()
}

func (k *kernel) begin() *txn {
	if k.tables == nil {
		k.tables = map[nft.Family]*table{}
	}
	return &txn{k: k}
}

func (x *txn) rollback() {
	for i := len(x.undo) - 1; i >= 0; i-- {
		x.undo[i]()
	}
}

// put sets m[key] to v, or deletes it if del, undoably.
func put[K comparable, V any](x *txn, m map[K]V, key K, v V, del bool) {
	old, had := m[key]
	if del {
		delete(m, key)
	} else {
		m[key] = v
	}
	x.undo = append(x.undo, func() {
		if had {
			m[key] = old
		} else {
			delete(m, key)
		}
	})
}

// use adds delta to a use counter, undoably.
func (x *txn) use(m map[string]int, name string, delta int) {
	put(x, m, name, m[name]+delta, false)
}

// setRules replaces a chain's rules, undoably.
func (x *txn) setRules(c *chain, rules []rule) {
	old := c.rules
	c.rules = rules
	x.undo = append(x.undo, func() { c.rules = old })
}

// rejection is the error of an op the kernel refuses, with the errno the
// kernel answers it with.
func rejection(errno unix.Errno, format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), errno)
}

// apply applies one op the way the kernel validates it within a batch:
// in order, each op seeing what the ops before it did.
func (x *txn) apply(op nft.Op) error {
	f := op.Family
	if op.Kind == nft.OpAddTable {
		if _, ok := x.k.tables[f]; !ok {
			put(x, x.k.tables, f, &table{chains: map[string]*chain{}, sets: map[string]*set{},
				chainUses: map[string]int{}, setUses: map[string]int{}}, false)
		}
		return nil
	}
	t, ok := x.k.tables[f]
	if !ok {
		return rejection(unix.ENOENT, "no table %s %s", f, nft.TableName)
	}
	switch op.Kind {
	case nft.OpDelTable:
		put(x, x.k.tables, f, nil, true) // with everything in it
		return nil
	case nft.OpAddSet:
		return x.addSet(t, op.Set)
	case nft.OpDelSet:
		return x.delSet(t, op.Set.Name)
	case nft.OpAddChain:
		return x.addChain(t, op.Chain)
	case nft.OpFlushChain:
		if t.chains[op.Chain.Name] == nil {
			return rejection(unix.ENOENT, "no chain %s", op.Chain.Name)
		}
		c := t.chains[op.Chain.Name]
		for _, r := range c.rules {
			x.release(t, r.refs)
		}
		x.setRules(c, nil)
		return nil
	case nft.OpDelChain:
		return x.delChain(t, op.Chain.Name)
	case nft.OpAddRule:
		return x.addRule(t, f, op.Chain.Name, *op.Rule)
	case nft.OpAddElements:
		return x.addElements(t, op.Set.Name, op.ElementList())
	case nft.OpDelElements:
		return x.delElements(t, op.Set.Name, op.ElementList())
	}
	return rejection(unix.EINVAL, "unknown op %d", op.Kind)
}

// addSet adds a set; adding one that exists keeps its elements, and is
// refused when the type differs (the kernel does not change a set's type).
func (x *txn) addSet(t *table, s *nft.Set) error {
	if have, ok := t.sets[s.Name]; ok {
		if !have.shape.SameShape(s) {
			return rejection(unix.EEXIST, "set %s exists with another type", s.Name)
		}
		return nil
	}
	put(x, t.sets, s.Name, &set{shape: shapeOf(s), elems: map[string]nft.Element{}}, false)
	return nil
}

// shapeOf copies a set's type, as the kernel records it.
func shapeOf(s *nft.Set) *nft.Set {
	return &nft.Set{Name: s.Name, Key: slices.Clone(s.Key), Data: slices.Clone(s.Data), Verdict: s.Verdict,
		Proto: s.Proto, Comment: s.Comment, Dynamic: s.Dynamic, Timeout: s.Timeout}
}

// delSet deletes a set no rule uses; its verdict elements release the
// chains they name.
func (x *txn) delSet(t *table, name string) error {
	s, ok := t.sets[name]
	if !ok {
		return rejection(unix.ENOENT, "no set %s", name)
	}
	if n := t.setUses[name]; n > 0 {
		return rejection(unix.EBUSY, "set %s is used by %d rule(s)", name, n)
	}
	for _, e := range s.elems {
		x.releaseVerdict(t, e)
	}
	put(x, t.sets, name, nil, true)
	return nil
}

// addChain adds a chain; adding one that exists keeps its rules, and is
// refused when it would change the hook of a chain.
func (x *txn) addChain(t *table, c *nft.Chain) error {
	if have, ok := t.chains[c.Name]; ok {
		if c.Base != nil && (have.base == nil || *have.base != *c.Base) {
			return rejection(unix.EEXIST, "chain %s exists with another hook", c.Name)
		}
		return nil
	}
	var base *nft.BaseChain
	if c.Base != nil {
		b := *c.Base
		base = &b
	}
	put(x, t.chains, c.Name, &chain{base: base}, false)
	return nil
}

// delChain deletes a chain without rules that nothing jumps to. (Recent
// kernels delete a chain's rules with it; older ones refuse, as the fake
// does: Diff flushes a chain before deleting it, which both accept.)
func (x *txn) delChain(t *table, name string) error {
	c, ok := t.chains[name]
	if !ok {
		return rejection(unix.ENOENT, "no chain %s", name)
	}
	if len(c.rules) > 0 {
		return rejection(unix.EBUSY, "chain %s has %d rule(s)", name, len(c.rules))
	}
	if n := t.chainUses[name]; n > 0 {
		return rejection(unix.EBUSY, "chain %s is still jumped to by %d rule(s) or element(s)", name, n)
	}
	put(x, t.chains, name, nil, true)
	return nil
}

// addRule appends a rule whose every reference resolves: chains exist and
// are not base chains, sets exist and are of the kind the rule uses them as.
func (x *txn) addRule(t *table, f nft.Family, name string, r nft.Rule) error {
	if t.chains[name] == nil {
		return rejection(unix.ENOENT, "no chain %s", name)
	}
	refs := refsOf(f, r)
	for _, rf := range refs {
		if err := t.check(rf); err != nil {
			return err
		}
	}
	c := t.chains[name]
	x.setRules(c, append(c.rules, rule{rule: r, refs: refs}))
	for _, rf := range refs {
		x.use(t.uses(rf), rf.name, 1)
	}
	return nil
}

// check resolves one reference of a rule.
func (t *table) check(rf ref) error {
	if rf.kind == refChain {
		return t.checkTarget(rf.name)
	}
	s, ok := t.sets[rf.name]
	if !ok {
		return rejection(unix.ENOENT, "no set %s", rf.name)
	}
	switch {
	case rf.kind == refVmap && !s.shape.Verdict:
		return rejection(unix.EINVAL, "vmap @%s: not a verdict map", rf.name)
	case rf.kind == refMap && (!s.shape.IsMap() || s.shape.Verdict):
		return rejection(unix.EINVAL, "map @%s: not a data map", rf.name)
	case rf.kind == refDynset && !s.shape.Dynamic:
		return rejection(unix.EOPNOTSUPP, "update @%s: not a dynamic set", rf.name)
	}
	return nil
}

// checkTarget resolves the chain of a jump or goto.
func (t *table) checkTarget(name string) error {
	c, ok := t.chains[name]
	switch {
	case !ok:
		return rejection(unix.ENOENT, "no chain %s", name)
	case c.base != nil:
		return rejection(unix.EOPNOTSUPP, "jump or goto to base chain %s", name)
	}
	return nil
}

// uses returns the use counters of the kind of object rf names.
func (t *table) uses(rf ref) map[string]int {
	if rf.kind == refChain {
		return t.chainUses
	}
	return t.setUses
}

// release drops the uses a removed rule held.
func (x *txn) release(t *table, refs []ref) {
	for _, rf := range refs {
		x.use(t.uses(rf), rf.name, -1)
	}
}

func (x *txn) releaseVerdict(t *table, e nft.Element) {
	if e.Verdict != nil && e.Verdict.Chain != "" {
		x.use(t.chainUses, e.Verdict.Chain, -1)
	}
}

// addElements adds elements of the set's type; an element that exists
// with the same value is left alone, with another value refused.
func (x *txn) addElements(t *table, name string, els []nft.Element) error {
	s, ok := t.sets[name]
	if !ok {
		return rejection(unix.ENOENT, "no set %s", name)
	}
	for _, e := range els {
		key := e.KeyString()
		if len(e.Key) != len(s.shape.Key) || (e.Verdict != nil) != s.shape.Verdict || (len(e.Data) > 0) != (len(s.shape.Data) > 0) {
			return rejection(unix.EINVAL, "element %s : %s does not fit the type of %s", key, e.ValueString(), name)
		}
		if have, ok := s.elems[key]; ok {
			if !have.Equal(e) {
				return rejection(unix.EEXIST, "element %s of %s exists with value %s, not %s", key, name, have.ValueString(), e.ValueString())
			}
			continue
		}
		if e.Verdict != nil && e.Verdict.Chain != "" {
			if err := t.checkTarget(e.Verdict.Chain); err != nil {
				return fmt.Errorf("element %s of %s: %w", key, name, err)
			}
			x.use(t.chainUses, e.Verdict.Chain, 1)
		}
		put(x, s.elems, key, e, false)
	}
	return nil
}

// delElements deletes elements by key; each must exist.
func (x *txn) delElements(t *table, name string, els []nft.Element) error {
	s, ok := t.sets[name]
	if !ok {
		return rejection(unix.ENOENT, "no set %s", name)
	}
	for _, e := range els {
		key := e.KeyString()
		have, ok := s.elems[key]
		if !ok {
			return rejection(unix.ENOENT, "no element %s in %s", key, name)
		}
		x.releaseVerdict(t, have)
		put(x, s.elems, key, nft.Element{}, true)
	}
	return nil
}
