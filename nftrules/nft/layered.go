package nft

import "iter"

// layered is a copy-on-write map from keys K to V for values that a
// chain of derived rulesets changes a few at a time: a large base shared
// by every ruleset derived from it, frozen maps of later changes above it
// (newest last, also shared), and this ruleset's own top map, the only one
// written. A fork freezes the top and shares every map: it copies none of
// them, so its cost does not depend on how many keys the map holds.
//
// Frozen maps are merged in the background of forks, each merge writing a
// new map and never an old one: two neighbours when the older one is no
// more than twice as large (so there are O(log n) of them, and each change
// is copied O(log n) times), and all of them into a new base once they hold
// more than an eighth of its size (so the base, O(n) to rebuild, is
// rebuilt once per n/8 changed keys). A fork therefore costs, amortized,
// O(k log n) map writes for k keys changed per ruleset, where the overlay
// it replaces copied 64 + 16·√n entries on every fork.
//
// Deleted keys are recorded as values that are not live; they shadow the
// maps below them and are dropped when merged into the base. The zero
// value is an empty map.
type layered[K comparable, V layerValue] struct {
	base   map[K]V   // shared: never written
	frozen []map[K]V // shared, never written; oldest first
	top    map[K]V   // this ruleset's own changes
	upper  int       // entries in frozen and top (keys counted once per map)
	topDel int       // entries of top that mark a key deleted
}

// layerValue is a value of a layered map; a value that is not live marks
// its key deleted.
type layerValue interface{ live() bool }

// get returns the value of key from the newest map holding it.
func (l *layered[K, V]) get(key K) (V, bool) {
	if v, ok := l.top[key]; ok {
		return v, true
	}
	for i := len(l.frozen) - 1; i >= 0; i-- {
		if v, ok := l.frozen[i][key]; ok {
			return v, true
		}
	}
	v, ok := l.base[key]
	return v, ok
}

// getBytes is get of a string key held in a byte slice (no string
// allocated).
func getBytes[V layerValue](l *layered[string, V], key []byte) (V, bool) {
	if v, ok := l.top[string(key)]; ok {
		return v, true
	}
	for i := len(l.frozen) - 1; i >= 0; i-- {
		if v, ok := l.frozen[i][string(key)]; ok {
			return v, true
		}
	}
	v, ok := l.base[string(key)]
	return v, ok
}

// put sets key in the top map.
func (l *layered[K, V]) put(key K, v V) {
	if l.top == nil {
		l.top = map[K]V{}
	}
	if old, ok := l.top[key]; !ok {
		l.upper++
	} else if !old.live() {
		l.topDel--
	}
	if !v.live() {
		l.topDel++
	}
	l.top[key] = v
}

// each calls fn for the newest value of every key whose value is live, in
// no particular order.
func (l *layered[K, V]) each(fn func(key K, v V)) {
	for k, v := range l.all() {
		fn(k, v)
	}
}

// all yields what each passes fn, and copies no map: a key is yielded
// from the newest map holding it, and skipped in the older ones by a
// lookup in each newer map (O(log n) of them).
func (l *layered[K, V]) all() iter.Seq2[K, V] {
	return func(yield func(K, V) bool) {
		maps := l.newestFirst()
		for i, m := range maps {
			for k, v := range m {
				if v.live() && !heldIn(maps[:i], k) && !yield(k, v) {
					return
				}
			}
		}
	}
}

// newestFirst lists the top, the frozen maps and the base, newest first.
func (l *layered[K, V]) newestFirst() []map[K]V {
	out := make([]map[K]V, 0, len(l.frozen)+2)
	out = append(out, l.top)
	for i := len(l.frozen) - 1; i >= 0; i-- {
		out = append(out, l.frozen[i])
	}
	return append(out, l.base)
}

// heldIn reports whether any of maps holds key.
func heldIn[K comparable, V any](maps []map[K]V, key K) bool {
	for _, m := range maps {
		if _, ok := m[key]; ok {
			return true
		}
	}
	return false
}

// merged returns the newest live value of every key in one new map: a
// new base.
func (l *layered[K, V]) merged() map[K]V {
	out := make(map[K]V, len(l.base)+l.upper)
	for k, v := range l.all() {
		out[k] = v
	}
	return out
}

// rebased returns a new base and the frozen maps above it, for a fork
// whose changes outgrew the base: a new map of every live key, or, when
// the top holds nearly every key and deletes none (a cold build wrote the
// whole map into one top), the top itself under one map of the few keys
// of the older maps it does not hold. The top is then shared, never
// written again, and not copied: the first fork after a cold build of
// 50,000 Services would otherwise copy 50,000 entries per large map.
func (l *layered[K, V]) rebased() (base map[K]V, frozen []map[K]V, upper int) {
	older := len(l.base) + l.upper - len(l.top)
	if l.topDel > 0 || older > maxUpper(len(l.top))/2 {
		return l.merged(), nil, 0
	}
	below := layered[K, V]{base: l.base, frozen: l.frozen}
	rest := map[K]V{}
	for k, v := range below.all() {
		if _, shadowed := l.top[k]; !shadowed {
			rest[k] = v
		}
	}
	if len(rest) == 0 {
		return l.top, nil, 0
	}
	return l.top, []map[K]V{rest}, len(rest)
}

// fork returns a copy that can be changed without changing l: l's top
// becomes a frozen map shared by both.
func (l *layered[K, V]) fork() layered[K, V] {
	c := layered[K, V]{base: l.base, upper: l.upper}
	if len(l.top) == 0 && len(l.frozen) == 0 {
		return c
	}
	if l.upper > maxUpper(len(l.base)) {
		c.base, c.frozen, c.upper = l.rebased()
		return c
	}
	c.frozen = append(l.frozen[:len(l.frozen):len(l.frozen)], l.top)
	if len(l.top) == 0 {
		c.frozen = c.frozen[:len(c.frozen)-1]
	}
	for n := len(c.frozen); n >= 2 && len(c.frozen[n-2]) <= 2*len(c.frozen[n-1]); n = len(c.frozen) {
		m := make(map[K]V, len(c.frozen[n-2])+len(c.frozen[n-1]))
		for _, src := range c.frozen[n-2:] {
			for k, v := range src {
				m[k] = v
			}
		}
		c.upper -= len(c.frozen[n-2]) + len(c.frozen[n-1]) - len(m)
		// A new slice: the parent's frozen list is shared.
		c.frozen = append(c.frozen[:n-2:n-2], m)
	}
	return c
}

// maxUpper is the number of entries above a base of n past which a fork
// merges everything into a new base: rebuilding the base costs O(n), so
// it must wait for a number of changes proportional to n; and what waits
// is memory the base already holds, so at most an eighth more (the
// endpoint maps' shards are small sets: a large constant here would let
// each hold many times its size in changes).
func maxUpper(n int) int { return 64 + n/8 }
