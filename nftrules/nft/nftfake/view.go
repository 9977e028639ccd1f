package nftfake

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/nftproxy/nftproxy/nftrules/nft"
)

// ruleset returns the state as a new Ruleset. live gives it the way the
// reconciler reads it back from a kernel: rules as their identity (Opaque),
// no elements for dynamic sets nor for the sets in skip.
func (k *kernel) ruleset(live bool, skip map[string]bool) *nft.Ruleset {
	rs := nft.NewRuleset()
	for f, t := range k.tables {
		out := rs.Table(f)
		for name, c := range t.chains {
			oc := out.Chain(name)
			if c.base != nil {
				b := *c.base
				oc.Base = &b
			}
			for _, r := range c.rules {
				if live {
					oc.Add(nft.Opaque{Text: r.rule.Identity(f)})
				} else {
					oc.Rules = append(oc.Rules, r.rule)
				}
			}
		}
		for name, s := range t.sets {
			os := shapeOf(s.shape)
			if !live || !s.shape.Dynamic && !skip[name] {
				for _, e := range s.elems {
					os.Put(e)
				}
			}
			out.Sets.Put(name, os)
		}
	}
	return rs
}

// maxDifferences bounds the differences compare lists.
const maxDifferences = 20

// compare lists how the state differs from want (see Fake.Compare).
func (k *kernel) compare(want *nft.Ruleset) error {
	var diffs []string
	add := func(format string, args ...any) { diffs = append(diffs, fmt.Sprintf(format, args...)) }
	for _, f := range union(k.tables, want.Tables) {
		t, w := k.tables[f], want.Tables[f]
		switch {
		case w == nil:
			add("table %s %s: not wanted", f, nft.TableName)
			continue
		case t == nil:
			add("table %s %s: missing", f, nft.TableName)
			continue
		}
		for _, name := range union(t.chains, maps.Collect(w.Chains.All())) {
			if d := compareChain(f, t.chains[name], w.Chains.Get(name)); d != "" {
				add("table %s chain %s: %s", f, name, d)
			}
		}
		for _, name := range union(t.sets, maps.Collect(w.Sets.All())) {
			if d := compareSet(t.sets[name], w.Sets.Get(name)); d != "" {
				add("table %s set %s: %s", f, name, d)
			}
		}
	}
	if len(diffs) == 0 {
		return nil
	}
	if len(diffs) > maxDifferences {
		diffs = append(diffs[:maxDifferences], fmt.Sprintf("and %d more differences", len(diffs)-maxDifferences))
	}
	return errors.New(strings.Join(diffs, "\n"))
}

func union[K interface{ ~string }, A, B any](a map[K]A, b map[K]B) []K {
	keys := slices.AppendSeq(slices.Collect(maps.Keys(a)), maps.Keys(b))
	slices.Sort(keys)
	return slices.Compact(keys)
}

func compareChain(f nft.Family, have *chain, want *nft.Chain) string {
	switch {
	case want == nil:
		return "not wanted"
	case have == nil:
		return "missing"
	case (have.base == nil) != (want.Base == nil) || have.base != nil && *have.base != *want.Base:
		return fmt.Sprintf("hook %v, want %v", have.base, want.Base)
	}
	var h, w []string
	for _, r := range have.rules {
		h = append(h, r.rule.Identity(f))
	}
	for _, r := range want.Rules {
		w = append(w, r.Identity(f))
	}
	if slices.Equal(h, w) {
		return ""
	}
	return fmt.Sprintf("rules\n\t%s\nwant\n\t%s", strings.Join(h, "\n\t"), strings.Join(w, "\n\t"))
}

func compareSet(have *set, want *nft.Set) string {
	switch {
	case want == nil:
		return "not wanted"
	case have == nil:
		return "missing"
	case !have.shape.SameShape(want):
		return "of another type"
	case want.Dynamic:
		return "" // the packet path's elements
	}
	var d []string
	wantEls := want.Elements()
	for _, key := range union(have.elems, wantEls) {
		h, inHave := have.elems[key]
		w, inWant := wantEls[key]
		switch {
		case !inWant:
			d = append(d, fmt.Sprintf("element %s not wanted", render(h)))
		case !inHave:
			d = append(d, fmt.Sprintf("element %s missing", render(w)))
		case !h.Equal(w):
			d = append(d, fmt.Sprintf("element %s is %s, want %s", key, h.ValueString(), w.ValueString()))
		}
	}
	if len(d) > maxDifferences {
		d = append(d[:maxDifferences], fmt.Sprintf("and %d more", len(d)-maxDifferences))
	}
	return strings.Join(d, "; ")
}

// render renders an element as in nft's listing: key, and value for maps.
func render(e nft.Element) string {
	if v := e.ValueString(); v != "" {
		return e.KeyString() + " : " + v
	}
	return e.KeyString()
}
