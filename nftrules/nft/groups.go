package nft

import "bytes"

// ownerGroups maps element owners to their elements, copy-on-write: a
// ruleset derived by a Builder shares the maps with its parent and records
// its own changes in a map of its own (see layered), so a Build that
// changes one Service copies no map of the size of the set.
type ownerGroups struct {
	m layered[string, *elemGroup]
	n int // owners present
}

// deletedGroup marks an owner deleted in ownerGroups' maps: a pointer
// alone is a 24-byte map slot with its string key, a pointer and a flag
// were 32 (a Builder keeps four owner entries per service port).
var deletedGroup = &elemGroup{}

func (g *elemGroup) live() bool { return g != deletedGroup }

func (g *ownerGroups) get(owner string) (*elemGroup, bool) {
	if g == nil {
		return nil, false
	}
	els, ok := g.m.get(owner)
	if !ok || !els.live() {
		return nil, false
	}
	return els, true
}

func (g *ownerGroups) set(owner string, els *elemGroup) {
	if _, ok := g.get(owner); !ok {
		g.n++
	}
	g.m.put(owner, els)
}

func (g *ownerGroups) del(owner string) {
	if _, ok := g.get(owner); !ok {
		return
	}
	g.n--
	g.m.put(owner, deletedGroup)
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
	g.m.each(fn)
}

// fork returns a copy that can be changed without changing g.
func (g *ownerGroups) fork() *ownerGroups {
	if g == nil {
		return &ownerGroups{}
	}
	return &ownerGroups{m: g.m.fork(), n: g.n}
}

// keyCounts counts, per key, the element groups of a set holding it (sets
// with SharedKeys), copy-on-write like ownerGroups. Keys are refKeys. The
// hairpin set counts every endpoint address (100,000 keys at 10k Services
// x 10 endpoints): an encoded key is counted under a fixed-size array,
// not a string, and only renderings under strings. A key of two equal
// halves, as every hairpin key is (an endpoint address twice), is
// counted under its first half: an IPv4 hairpin key takes an 8-byte map
// slot, where as a string it took a 32-byte slot and a 16-byte string.
// Every encoded key of a set has the set's key width, so the maps' keys
// of one set are distinct (padded with zeros, or halved).
type keyCounts struct {
	k4  layered[[4]byte, count]  // keys of up to 4 bytes; 8-byte pairs (IPv4)
	k8  layered[[8]byte, count]  // other keys of up to 8 bytes
	k16 layered[[16]byte, count] // keys of 9 to 16 bytes; 32-byte pairs (IPv6)
	k32 layered[[32]byte, count] // other keys of up to 32 bytes
	m   layered[string, count]   // any other refKey
	n   int                      // keys with a count above 0
}

// count is a key's count; 0 (no group holds it) marks it deleted. A
// count is at most the number of owners (service ports, < 2^18).
type count int32

func (c count) live() bool { return c > 0 }

// countedAs returns how keyCounts counts a refKey: the bytes of its
// encoding it keeps (the first half of a pair) and the size of the array
// they go into, 0 for a string.
func countedAs(key []byte) ([]byte, int) {
	if len(key) < 2 || key[0] != 0 {
		return key, 0 // a rendering
	}
	enc := key[1:]
	switch w := len(enc); {
	case w <= 4:
		return enc, 4
	case w == 8 && bytes.Equal(enc[:4], enc[4:]):
		return enc[:4], 4
	case w <= 8:
		return enc, 8
	case w <= 16:
		return enc, 16
	case w == 32 && bytes.Equal(enc[:16], enc[16:]):
		return enc[:16], 16
	case w <= 32:
		return enc, 32
	}
	return key, 0
}

func (k *keyCounts) get(key string) int { return k.getBytes([]byte(key)) }

// getBytes is get of a key held in a byte slice (no string allocated).
func (k *keyCounts) getBytes(key []byte) int {
	var c count
	switch b, size := countedAs(key); size {
	case 4:
		c, _ = k.k4.get(fixedKey[[4]byte](b))
	case 8:
		c, _ = k.k8.get(fixedKey[[8]byte](b))
	case 16:
		c, _ = k.k16.get(fixedKey[[16]byte](b))
	case 32:
		c, _ = k.k32.get(fixedKey[[32]byte](b))
	default:
		c, _ = getBytes(&k.m, b)
	}
	return int(c)
}

func (k *keyCounts) put(key string, c int) { k.putBytes([]byte(key), c) }

func (k *keyCounts) putBytes(key []byte, c int) {
	was := k.getBytes(key)
	switch {
	case was <= 0 && c > 0:
		k.n++
	case was > 0 && c <= 0:
		k.n--
	}
	switch b, size := countedAs(key); size {
	case 4:
		k.k4.put(fixedKey[[4]byte](b), count(c))
	case 8:
		k.k8.put(fixedKey[[8]byte](b), count(c))
	case 16:
		k.k16.put(fixedKey[[16]byte](b), count(c))
	case 32:
		k.k32.put(fixedKey[[32]byte](b), count(c))
	default:
		k.m.put(string(b), count(c))
	}
}

// fixedKey returns b padded with zeros into an array.
func fixedKey[A [4]byte | [8]byte | [16]byte | [32]byte](b []byte) (a A) {
	var buf [32]byte
	copy(buf[:], b)
	return A(buf[:len(a)])
}

// add counts the keys of a group of set s (by refKey).
func (k *keyCounts) add(s *Set, g *elemGroup) { k.countGroup(s, g, 1) }

func (k *keyCounts) remove(s *Set, g *elemGroup) { k.countGroup(s, g, -1) }

func (k *keyCounts) countGroup(s *Set, g *elemGroup, by int) {
	var buf [80]byte
	for i := range g.len() {
		key := g.refKeyOf(buf[:0], s, i)
		k.putBytes(key, k.getBytes(key)+by)
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
	return &keyCounts{k4: k.k4.fork(), k8: k.k8.fork(), k16: k.k16.fork(), k32: k.k32.fork(), m: k.m.fork(), n: k.n}
}
