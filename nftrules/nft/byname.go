package nft

import "iter"

// ByName holds a table's chains or its sets by name. A ruleset derived
// from another (Derive) shares them with its parent copy-on-write (see
// layered): a Derivation that changes one chain or set of a table of
// 50,000 copies no map of that size, where a plain map was copied whole.
// The zero value is empty.
//
// A ByName copied as a value shares its storage with the original: only
// one of them may be written afterwards.
type ByName[V tableObject] struct {
	m layered[string, V]
	n int // names present
}

// tableObject is a chain or a set; nil marks a deleted name in the layers.
type tableObject interface {
	*Chain | *Set
	layerValue
}

func (c *Chain) live() bool { return c != nil }
func (s *Set) live() bool   { return s != nil }

// Get returns the object of that name, nil when there is none.
func (b *ByName[V]) Get(name string) V {
	v, _ := b.m.get(name)
	return v
}

// getBytes is Get of a name held in a byte slice (no string allocated).
func (b *ByName[V]) getBytes(name []byte) V {
	v, _ := getBytes(&b.m, name)
	return v
}

// Put adds or replaces the object of that name; a nil v deletes it.
func (b *ByName[V]) Put(name string, v V) {
	if !v.live() {
		b.Delete(name)
		return
	}
	if !b.Get(name).live() {
		b.n++
	}
	b.m.put(name, v)
}

// Delete removes the object of that name, if any.
func (b *ByName[V]) Delete(name string) {
	if !b.Get(name).live() {
		return
	}
	b.n--
	var deleted V
	b.m.put(name, deleted)
}

// Len returns the number of objects.
func (b *ByName[V]) Len() int { return b.n }

// All yields every name and its object, in no particular order.
func (b *ByName[V]) All() iter.Seq2[string, V] { return b.m.all() }

// Keys yields every name, in no particular order.
func (b *ByName[V]) Keys() iter.Seq[string] {
	return func(yield func(string) bool) {
		for name := range b.m.all() {
			if !yield(name) {
				return
			}
		}
	}
}

// fork returns a copy that can be changed without changing b; b must not
// be changed afterwards (they share its storage).
func (b *ByName[V]) fork() ByName[V] { return ByName[V]{m: b.m.fork(), n: b.n} }
