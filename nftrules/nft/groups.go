package nft

// ownerGroups maps element owners to their elements, copy-on-write: a
// ruleset derived by a Builder shares the maps with its parent and records
// its own changes in a map of its own (see layered), so a Build that
// changes one Service copies no map of the size of the set.
type ownerGroups struct {
	m layered[groupEntry]
	n int // owners present
}

type groupEntry struct {
	els     *elemGroup
	deleted bool
}

func (e groupEntry) live() bool { return !e.deleted }

func (g *ownerGroups) get(owner string) (*elemGroup, bool) {
	if g == nil {
		return nil, false
	}
	e, ok := g.m.get(owner)
	return e.els, ok && !e.deleted
}

func (g *ownerGroups) set(owner string, els *elemGroup) {
	if _, ok := g.get(owner); !ok {
		g.n++
	}
	g.m.put(owner, groupEntry{els: els})
}

func (g *ownerGroups) del(owner string) {
	if _, ok := g.get(owner); !ok {
		return
	}
	g.n--
	g.m.put(owner, groupEntry{deleted: true})
}

func (g *ownerGroups) len() int {
	if g == nil {
		return 0
	}
	return g.n
}

// each calls fn for every owner and its elements, in no particular order.
func (g *ownerGroups) each(fn func(owner string, els *elemGroup)) {
	if g == nil {
		return
	}
	g.m.each(func(o string, e groupEntry) { fn(o, e.els) })
}

// fork returns a copy that can be changed without changing g.
func (g *ownerGroups) fork() *ownerGroups {
	if g == nil {
		return &ownerGroups{}
	}
	return &ownerGroups{m: g.m.fork(), n: g.n}
}

// keyCounts counts, per key, the element groups of a set holding it (sets
// with SharedKeys), copy-on-write like ownerGroups.
type keyCounts struct {
	m layered[count]
	n int // keys with a count above 0
}

// count is a key's count; 0 (no group holds it) marks it deleted.
type count int

func (c count) live() bool { return c > 0 }

func (k *keyCounts) get(key string) int {
	c, _ := k.m.get(key)
	return int(c)
}

// getBytes is get of a key held in a byte slice (no string allocated).
func (k *keyCounts) getBytes(key []byte) int {
	c, _ := k.m.getBytes(key)
	return int(c)
}

func (k *keyCounts) put(key string, c int) {
	was := k.get(key)
	switch {
	case was <= 0 && c > 0:
		k.n++
	case was > 0 && c <= 0:
		k.n--
	}
	k.m.put(key, count(c))
}

// add counts the keys of a group of set s (by refKey).
func (k *keyCounts) add(s *Set, g *elemGroup) { k.countGroup(s, g, 1) }

func (k *keyCounts) remove(s *Set, g *elemGroup) { k.countGroup(s, g, -1) }

func (k *keyCounts) countGroup(s *Set, g *elemGroup, by int) {
	var buf [80]byte
	for i := range g.len() {
		key := g.refKeyOf(buf[:0], s, i)
		k.put(string(key), k.getBytes(key)+by)
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
	return &keyCounts{m: k.m.fork(), n: k.n}
}
