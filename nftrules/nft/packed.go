package nft

import (
	"bytes"
	"encoding/binary"
	"net/netip"

	"golang.org/x/sys/unix"
)

// elemGroup is the elements one owner contributes to a set. A Builder's
// ruleset lives for as long as it is the last one applied, and most of it
// is endpoint elements: as Elements an endpoint costs ~240 bytes (two
// Elements of 56 B and four 32-byte Values), as the kernel encoding of
// its key and data ~20. A group built by SetGroup is therefore kept
// packed — per element the key's kernel encoding then the data's, and a
// verdict map's verdicts beside — and decoded only when a Diff, Verify or
// the dump look at it. Elements whose values do not fit the set's types
// exactly (so that decoding would not give them back unchanged) and the
// elements of Put stay as they are.
//
// A group is immutable once made, except the unowned group Put fills;
// Diff skips a group both rulesets share by its identity.
//
// A Builder keeps four groups per service port (its endpoints, hairpin
// keys, dispatch and ClusterIP elements), so the struct is kept at 48
// bytes: the rare unpacked elements and a verdict map's verdicts (one
// group of four) behind pointers.
type elemGroup struct {
	packed   []byte     // n records of the key's encoding, then the data's
	verdicts *[]Verdict // a verdict map's verdicts, one per record
	unpacked *[]Element // the elements, when not packed (nil: packed)
	n        int
}

// verdict returns the verdict of record i of a verdict map's group.
func (g *elemGroup) verdict(i int) *Verdict { return &(*g.verdicts)[i] }

// unpackedGroup returns els as a group as they are.
func unpackedGroup(els []Element) *elemGroup {
	return &elemGroup{unpacked: &els, n: len(els)}
}

// isPacked reports whether the group holds packed records.
func (g *elemGroup) isPacked() bool { return g.unpacked == nil }

// els returns the elements of a group that is not packed.
func (g *elemGroup) els() []Element { return *g.unpacked }

// packGroup returns els as a group of set s, packed when every element
// fits s's types exactly.
func packGroup(s *Set, els []Element) *elemGroup {
	kw, dw := s.recordWidths()
	for i := range els {
		if !s.packable(&els[i]) {
			return unpackedGroup(els)
		}
	}
	g := &elemGroup{packed: make([]byte, 0, len(els)*(kw+dw)), n: len(els)}
	if s.Verdict {
		vs := make([]Verdict, len(els))
		g.verdicts = &vs
	}
	for i := range els {
		e := &els[i]
		g.packed, _ = appendValues(g.packed, s.Key, e.Key) // packable: no error
		if len(s.Data) > 0 {
			g.packed, _ = appendValues(g.packed, s.Data, e.Data)
		}
		if s.Verdict {
			*g.verdict(i) = *e.Verdict
		}
	}
	return g
}

// len is the number of elements of the group (nil: none).
func (g *elemGroup) len() int {
	if g == nil {
		return 0
	}
	return g.n
}

// elements returns the group's elements, decoded when packed (a new
// list each time: callers may keep it).
func (g *elemGroup) elements(s *Set) []Element {
	if g == nil {
		return nil
	}
	if !g.isPacked() {
		return g.els()
	}
	return g.appendElements(make([]Element, 0, g.n), s)
}

// appendElements appends the group's elements to dst, decoding them into
// one allocation of Values when packed.
func (g *elemGroup) appendElements(dst []Element, s *Set) []Element {
	if g == nil {
		return dst
	}
	if !g.isPacked() {
		return append(dst, g.els()...)
	}
	kw, dw := s.recordWidths()
	nk, nd := len(s.Key), len(s.Data)
	vals := make([]Value, 0, g.n*(nk+nd))
	for i := 0; i < g.n; i++ {
		rec := g.packed[i*(kw+dw) : (i+1)*(kw+dw)]
		at := len(vals)
		var e Element
		vals = appendDecoded(vals, s.Key, rec[:kw])
		e.Key = vals[at : at+nk : at+nk]
		if nd > 0 {
			vals = appendDecoded(vals, s.Data, rec[kw:])
			e.Data = vals[at+nk : at+nk+nd : at+nk+nd]
		}
		if s.Verdict {
			e.Verdict = g.verdict(i)
		}
		dst = append(dst, e)
	}
	return dst
}

// refKeyOf appends the reference-count key (refKey) of element i's key.
func (g *elemGroup) refKeyOf(b []byte, s *Set, i int) []byte {
	if !g.isPacked() {
		return s.refKey(b, g.els()[i].Key)
	}
	kw, dw := s.recordWidths()
	return append(append(b, 0), g.packed[i*(kw+dw):i*(kw+dw)+kw]...)
}

// refKey appends the key under which a set's reference counts (refs)
// count key: its kernel encoding after a 0 byte when it fits the set's
// types (as packed groups hold it), its rendering after a 1 otherwise.
// The same key gives the same refKey from a packed group or not.
func (s *Set) refKey(b []byte, key []Value) []byte {
	if s.fits(s.Key, key) {
		b, _ = appendValues(append(b, 0), s.Key, key)
		return b
	}
	return appendJoined(append(b, 1), key)
}

// recordWidths returns the sizes of a packed element's key and data.
func (s *Set) recordWidths() (key, data int) {
	if len(s.Data) > 0 {
		data = encodedLen(s.Data)
	}
	return encodedLen(s.Key), data
}

// packable reports whether an element of s decodes from its packed form
// unchanged: its fields are exactly the set's, and so is its kind of
// value (none, data or verdict).
func (s *Set) packable(e *Element) bool {
	switch {
	case !s.fits(s.Key, e.Key):
		return false
	case s.Verdict:
		return e.Verdict != nil && e.Data == nil
	case len(s.Data) > 0:
		return e.Verdict == nil && s.fits(s.Data, e.Data)
	}
	return e.Verdict == nil && e.Data == nil
}

// fits reports whether values encode as types ts and decode back equal.
func (s *Set) fits(ts []Datatype, vs []Value) bool {
	if len(ts) != len(vs) || len(vs) == 0 {
		return false
	}
	for i, t := range ts {
		v := vs[i]
		switch t {
		case TypeIPv4Addr:
			if !v.Addr.Is4() || v.Num != 0 {
				return false
			}
		case TypeIPv6Addr:
			if !v.Addr.Is6() || v.Addr.Zone() != "" || v.Num != 0 {
				return false
			}
		case TypeInetProto:
			if v.Addr.IsValid() || v.Num > 0xff {
				return false
			}
		case TypeInetService:
			if v.Addr.IsValid() || v.Num > 0xffff {
				return false
			}
		case TypeIndex:
			if v.Addr.IsValid() {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// appendDecoded appends the values of types ts encoded in b (by
// appendValues) to vs.
func appendDecoded(vs []Value, ts []Datatype, b []byte) []Value {
	for _, t := range ts {
		var v Value
		n := 4
		switch t {
		case TypeIPv4Addr:
			v.Addr = netip.AddrFrom4([4]byte(b[:4]))
		case TypeIPv6Addr:
			v.Addr, n = netip.AddrFrom16([16]byte(b[:16])), 16
		case TypeInetProto:
			v.Num, n = uint32(b[0]), 1
		case TypeInetService:
			v.Num, n = uint32(binary.BigEndian.Uint16(b)), 2
		case TypeIndex:
			v.Num = binary.NativeEndian.Uint32(b)
		}
		if len(ts) > 1 {
			n = (n + 3) &^ 3
		}
		vs = append(vs, v)
		b = b[n:]
	}
	return vs
}

// encode encodes the group's elements into w's messages through put (see
// encodeElements): a packed record is already the kernel encoding of its
// key and data, so it is framed without being decoded.
func (g *elemGroup) encode(w *elemMsgWriter, put func(item []byte) error) error {
	if !g.isPacked() {
		for _, el := range g.els() {
			item, err := w.encodeItem(el)
			if err != nil {
				return err
			}
			if err := put(item); err != nil {
				return nameElement(err, el)
			}
		}
		return nil
	}
	s := w.set
	kw, dw := s.recordWidths()
	for i := 0; i < g.n; i++ {
		rec := g.packed[i*(kw+dw) : (i+1)*(kw+dw)]
		b, off := nest(w.item[:0], unix.NFTA_SET_ELEM_KEY|unix.NLA_F_NESTED)
		b = closeNest(attr(b, unix.NFTA_DATA_VALUE, rec[:kw]), off)
		switch {
		case s.Verdict:
			b = appendElemVerdict(b, *g.verdict(i))
		case dw > 0:
			b, off = nest(b, unix.NFTA_SET_ELEM_DATA|unix.NLA_F_NESTED)
			b = closeNest(attr(b, unix.NFTA_DATA_VALUE, rec[kw:]), off)
		}
		w.item = b
		if err := put(b); err != nil {
			return nameElement(err, g.elements(s)[i])
		}
	}
	return nil
}

// candidate is one element of a desired set as the comparisons with a set
// read from the kernel (diffRaw, Verify) look at it: a packed record,
// compared by its bytes and decoded only when it must be listed, or an
// Element.
type candidate struct {
	s *Set
	g *elemGroup // packed record i of g, or e
	i int
	e Element
}

// eachOf calls fn with each element of group g (of c.s).
func (c *candidate) eachOf(g *elemGroup, fn func(*candidate)) {
	if g == nil {
		return
	}
	if !g.isPacked() {
		c.g = nil
		for _, e := range g.els() {
			c.e = e
			fn(c)
		}
		return
	}
	c.g = g
	for c.i = 0; c.i < g.n; c.i++ {
		fn(c)
	}
	c.g = nil
}

// record returns the candidate's packed record and its key's width.
func (c *candidate) record() ([]byte, int) {
	kw, dw := c.s.recordWidths()
	return c.g.packed[c.i*(kw+dw) : (c.i+1)*(kw+dw)], kw
}

// key appends the kernel encoding of the candidate's key.
func (c *candidate) key(b []byte) ([]byte, error) {
	if c.g == nil {
		return appendValues(b, c.s.Key, c.e.Key)
	}
	rec, kw := c.record()
	return append(b, rec[:kw]...), nil
}

// sameValue reports whether the candidate's data or verdict equals what
// the kernel holds (sameRawValue).
func (c *candidate) sameValue(val, buf []byte) bool {
	if c.g == nil {
		return sameRawValue(c.s, c.e, val, buf)
	}
	rec, kw := c.record()
	switch {
	case c.s.Verdict:
		return sameRawVerdict(*c.g.verdict(c.i), val)
	case len(c.s.Data) > 0:
		return bytes.Equal(rec[kw:], val)
	}
	return true
}

// element returns the candidate as an Element (decoding a packed record).
func (c *candidate) element() Element {
	if c.g == nil {
		return c.e
	}
	rec, kw := c.record()
	var e Element
	e.Key = appendDecoded(nil, c.s.Key, rec[:kw])
	if len(c.s.Data) > 0 {
		e.Data = appendDecoded(nil, c.s.Data, rec[kw:])
	}
	if c.s.Verdict {
		e.Verdict = c.g.verdict(c.i)
	}
	return e
}

// Packer collects one owner's elements of a set in packed form as a
// Builder makes them, without making Elements first (at 10k Services x
// 10 endpoints the endpoint and hairpin Elements were ~25 MB of a cold
// Build's allocations, dropped as soon as packed). Its types must be the
// set's (Derivation.SetPacked checks).
type Packer struct {
	key, data []Datatype
	g         elemGroup
}

// NewPacker returns a Packer for n elements of a set with these key and
// data types (data nil: a set without data; verdict maps are not packed
// this way).
func NewPacker(key, data []Datatype, n int) *Packer {
	s := Set{Key: key, Data: data}
	kw, dw := s.recordWidths()
	return &Packer{key: key, data: data, g: elemGroup{packed: make([]byte, 0, n*(kw+dw))}}
}

// Add adds an element; values that do not fit the types are kept as an
// Element (the whole group then is).
func (p *Packer) Add(key, data []Value) {
	s := Set{Key: p.key, Data: p.data}
	if e := (Element{Key: key, Data: data}); p.g.isPacked() && s.packable(&e) {
		p.g.packed, _ = appendValues(p.g.packed, p.key, key)
		if len(p.data) > 0 {
			p.g.packed, _ = appendValues(p.g.packed, p.data, data)
		}
		p.g.n++
		return
	}
	if p.g.isPacked() {
		els := p.g.elements(&s)
		p.g.packed, p.g.unpacked = nil, &els
	}
	*p.g.unpacked = append(*p.g.unpacked, Element{Key: append([]Value(nil), key...), Data: append([]Value(nil), data...)})
	p.g.n++
}

// group returns the collected elements as a group of s: as packed when
// the types agree, re-packed for s otherwise.
func (p *Packer) group(s *Set) *elemGroup {
	if datatypesEqual(s.Key, p.key) && datatypesEqual(s.Data, p.data) && !s.Verdict {
		g := p.g // a copy: the Packer (and its types) need not stay
		return &g
	}
	return packGroup(s, p.g.elements(&Set{Key: p.key, Data: p.data}))
}
