package nft

import (
	"maps"
	"math"
)

// maxOverlay is the size past which an overlay over a base of n entries is
// folded into a new base. Every fork copies the overlay (a memmove, ~5 ns
// an entry) and every fold rebuilds the base (map inserts, ~300 ns an
// entry): with k entries changed per fork, a limit L costs about
// 5L/2 + 300nk/L ns per fork, least at L ~ 8 sqrt(nk). A fraction of n
// (n/8, as before) made the average fork copy n/16 entries: 31,000 for
// the hairpin set's counts at 50,000 Services x 10 endpoints, half of a
// change's CPU on our side. The cost still grows, as sqrt(n): a persistent
// map would make it constant.
func maxOverlay(n int) int { return 64 + 16*int(math.Sqrt(float64(n))) }

// ownerGroups maps element owners to their elements, copy-on-write: a
// ruleset derived by a Builder shares the large base map with its parent
// and records its own changes in a small overlay, so a Build that changes
// one Service copies a few entries, not 10,000. When the overlay grows past
// maxOverlay it is folded into a new base.
type ownerGroups struct {
	base    map[string][]Element // shared between rulesets: never written
	overlay map[string]groupEntry
	n       int // owners present
}

type groupEntry struct {
	els     []Element
	deleted bool
}

func (g *ownerGroups) get(owner string) ([]Element, bool) {
	if g == nil {
		return nil, false
	}
	if e, ok := g.overlay[owner]; ok {
		return e.els, !e.deleted
	}
	els, ok := g.base[owner]
	return els, ok
}

func (g *ownerGroups) set(owner string, els []Element) {
	if _, ok := g.get(owner); !ok {
		g.n++
	}
	if g.overlay == nil {
		g.overlay = map[string]groupEntry{}
	}
	g.overlay[owner] = groupEntry{els: els}
}

func (g *ownerGroups) del(owner string) {
	if _, ok := g.get(owner); !ok {
		return
	}
	g.n--
	if g.overlay == nil {
		g.overlay = map[string]groupEntry{}
	}
	g.overlay[owner] = groupEntry{deleted: true}
}

func (g *ownerGroups) len() int {
	if g == nil {
		return 0
	}
	return g.n
}

// each calls fn for every owner and its elements, in no particular order.
func (g *ownerGroups) each(fn func(owner string, els []Element)) {
	if g == nil {
		return
	}
	for o, els := range g.base {
		if _, changed := g.overlay[o]; !changed {
			fn(o, els)
		}
	}
	for o, e := range g.overlay {
		if !e.deleted {
			fn(o, e.els)
		}
	}
}

// fork returns a copy that can be changed without changing g.
func (g *ownerGroups) fork() *ownerGroups {
	if g == nil {
		return &ownerGroups{}
	}
	if len(g.overlay) > maxOverlay(len(g.base)) {
		base := make(map[string][]Element, g.n)
		g.each(func(o string, els []Element) { base[o] = els })
		return &ownerGroups{base: base, n: g.n}
	}
	overlay := make(map[string]groupEntry, len(g.overlay)+4)
	for o, e := range g.overlay {
		overlay[o] = e
	}
	return &ownerGroups{base: g.base, overlay: overlay, n: g.n}
}

// keyCounts counts, per key, the element groups of a set holding it (sets
// with SharedKeys), copy-on-write like ownerGroups: a derived ruleset
// shares the base with its parent and never writes it.
type keyCounts struct {
	base    map[string]int // shared between rulesets: never written
	overlay map[string]int // this ruleset's counts of changed keys (0: none)
	n       int            // keys with a count above 0
}

func (k *keyCounts) get(key string) int {
	if c, ok := k.overlay[key]; ok {
		return c
	}
	return k.base[key]
}

// getBytes is get of a key held in a byte slice (no string allocated).
func (k *keyCounts) getBytes(key []byte) int {
	if c, ok := k.overlay[string(key)]; ok {
		return c
	}
	return k.base[string(key)]
}

func (k *keyCounts) put(key string, c int) {
	was := k.get(key)
	switch {
	case was <= 0 && c > 0:
		k.n++
	case was > 0 && c <= 0:
		k.n--
	}
	if k.overlay == nil {
		k.overlay = map[string]int{}
	}
	k.overlay[key] = c
}

func (k *keyCounts) add(els []Element) {
	for _, e := range els {
		key := e.KeyString()
		k.put(key, k.get(key)+1)
	}
}

func (k *keyCounts) remove(els []Element) {
	for _, e := range els {
		key := e.KeyString()
		k.put(key, k.get(key)-1)
	}
}

func (k *keyCounts) len() int {
	if k == nil {
		return 0
	}
	return k.n
}

// fork returns a copy that can be changed without changing k.
func (k *keyCounts) fork() *keyCounts {
	if k == nil {
		return nil
	}
	if len(k.overlay) > maxOverlay(len(k.base)) {
		base := make(map[string]int, k.n)
		for key, c := range k.base {
			if _, changed := k.overlay[key]; !changed {
				base[key] = c
			}
		}
		for key, c := range k.overlay {
			if c > 0 {
				base[key] = c
			}
		}
		return &keyCounts{base: base, n: k.n}
	}
	return &keyCounts{base: k.base, overlay: maps.Clone(k.overlay), n: k.n}
}
