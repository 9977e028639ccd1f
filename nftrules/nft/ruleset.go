package nft

import (
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Family is the nftables address family of a table. We use one table per
// IP family (not one inet table) so that every set key has a single address
// type and every rule a single address width; see README.md.
type Family string

const (
	IPv4 Family = "ip"
	IPv6 Family = "ip6"
)

// Families lists the families in the order we program them.
var Families = []Family{IPv4, IPv6}

// FamilyOf returns the table family an address belongs to.
func FamilyOf(a netip.Addr) Family {
	if a.Is4() || a.Is4In6() {
		return IPv4
	}
	return IPv6
}

// Ruleset is the complete description of everything nftproxy owns in the
// kernel: one table per family.
type Ruleset struct {
	Tables map[Family]*Table

	// parent is the ruleset this one was derived from, and delta what
	// the Derivation changed per family: Diff(parent, rs) looks only
	// there.
	parent *Ruleset
	delta  map[Family]*tableDelta
}

// NewRuleset returns an empty ruleset.
func NewRuleset() *Ruleset { return &Ruleset{Tables: map[Family]*Table{}} }

// Table returns the table of a family, creating it when missing.
func (rs *Ruleset) Table(f Family) *Table {
	t, ok := rs.Tables[f]
	if !ok {
		t = &Table{Family: f, Name: TableName}
		rs.Tables[f] = t
	}
	return t
}

// SortedFamilies returns the families present, in a stable order.
func (rs *Ruleset) SortedFamilies() []Family {
	var out []Family
	for _, f := range Families {
		if _, ok := rs.Tables[f]; ok {
			out = append(out, f)
		}
	}
	return out
}

// Table is one nftables table of ours.
type Table struct {
	Family Family
	Name   string
	Chains ByName[*Chain]
	Sets   ByName[*Set]
}

// Chain returns the named chain, creating an empty regular chain if missing.
func (t *Table) Chain(name string) *Chain {
	c := t.Chains.Get(name)
	if c == nil {
		c = &Chain{Name: name}
		t.Chains.Put(name, c)
	}
	return c
}

// SortedChains returns base chains first (in hook order), then regular chains
// by name: the order the dump and the nft rendering use.
func (t *Table) SortedChains() []*Chain {
	out := make([]*Chain, 0, t.Chains.Len())
	for _, c := range t.Chains.All() {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if (a.Base != nil) != (b.Base != nil) {
			return a.Base != nil
		}
		return a.Name < b.Name
	})
	return out
}

// SortedSets returns the sets by name.
func (t *Table) SortedSets() []*Set {
	out := make([]*Set, 0, t.Sets.Len())
	for _, s := range t.Sets.All() {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Chain is a chain and its rules. Base chains carry a hook.
type Chain struct {
	Name  string
	Base  *BaseChain
	Rules []Rule
}

// Add appends a rule made of the given statements.
func (c *Chain) Add(stmts ...Stmt) { c.Rules = append(c.Rules, Rule{Stmts: stmts}) }

// BaseChain is the hook attachment of a base chain.
type BaseChain struct {
	Type     ChainType
	Hook     Hook
	Priority int
}

// ChainType is the nftables chain type.
type ChainType string

const (
	FilterChain ChainType = "filter"
	NATChain    ChainType = "nat"
)

// Hook is a netfilter hook.
type Hook string

const (
	Prerouting  Hook = "prerouting"
	Input       Hook = "input"
	Forward     Hook = "forward"
	Output      Hook = "output"
	Postrouting Hook = "postrouting"
)

// Rule is an ordered list of statements; the rule's identity (for diffing
// and for reading back) is its nft rendering.
type Rule struct {
	Stmts []Stmt
}

// Render returns the rule in nft syntax for a table of family f.
func (r Rule) Render(f Family) string {
	parts := make([]string, len(r.Stmts))
	for i, s := range r.Stmts {
		parts[i] = s.Render(f)
	}
	return strings.Join(parts, " ")
}

// Set is a named set or map.
//
// Elements are stored in groups, one per owner: the service chain name of
// the service port that contributed them, or "" for elements without an
// owner (read back from the kernel, or added with Put). A Builder shares the
// group of an unchanged service port between successive rulesets, so Diff
// can skip it by identity instead of comparing elements. Two owners may
// contribute the same key (the hairpin set); the set holds it once. A
// group is kept packed, as the kernel encoding of its elements (see
// elemGroup): Elements, Lookup, Each and SortedElements decode it.
type Set struct {
	Name string
	// Key lists the fields of the (possibly concatenated) key.
	Key []Datatype
	// Data lists the fields of a data map's value; nil for sets and vmaps.
	Data []Datatype
	// Verdict marks a verdict map.
	Verdict bool
	// Proto is the transport protocol an endpoint map's values are ports of
	// (nft's typeof names it); zero for other sets.
	Proto Protocol
	// Comment is shown by nft next to the set.
	Comment string
	// Dynamic sets are filled by the packet path (update @set) with
	// elements that expire after Timeout; their elements are the kernel's
	// business and never diffed.
	Dynamic bool
	Timeout time.Duration

	// SharedKeys marks a set whose owners may contribute the same key
	// (the hairpin set): the set holds it once, and keeps it while any
	// owner does. Without it each key has one owner.
	SharedKeys bool

	groups *ownerGroups
	// refs counts, per key, the groups holding it, for SharedKeys sets
	// filled by a Derivation; nil otherwise.
	refs *keyCounts
	// index is the merged view of all groups, computed on demand.
	index map[string]Element
	// flatPos locates Put elements in the "" group by key.
	flatPos map[string]int
	// raw holds the elements of a set read from the kernel until they are
	// asked for (rawset.go).
	raw map[string]rawElement
}

// IsMap reports whether the set maps keys to data or verdicts.
func (s *Set) IsMap() bool { return s.Verdict || len(s.Data) > 0 }

// Put adds (or replaces) an element without an owner.
func (s *Set) Put(e Element) {
	s.decodeRaw()
	if s.groups == nil {
		s.groups = &ownerGroups{}
	}
	key := e.KeyString()
	if s.flatPos == nil {
		s.flatPos = map[string]int{}
	}
	flat, ok := s.groups.get("")
	if !ok {
		flat = unpackedGroup(nil)
	}
	if i, ok := s.flatPos[key]; ok {
		flat.els()[i] = e
	} else {
		s.flatPos[key] = flat.n
		*flat.unpacked = append(*flat.unpacked, e)
		flat.n++
	}
	s.groups.set("", flat)
	s.index = nil
}

// Elements returns every element of the set by key rendering. The map is
// computed once and must not be modified.
func (s *Set) Elements() map[string]Element {
	s.decodeRaw()
	if s.index == nil {
		s.index = map[string]Element{}
		s.groups.each(func(_ string, g *elemGroup) {
			for _, e := range g.elements(s) {
				s.index[e.KeyString()] = e
			}
		})
	}
	return s.index
}

// Lookup returns the element with the given key rendering.
func (s *Set) Lookup(key string) (Element, bool) {
	e, ok := s.Elements()[key]
	return e, ok
}

// Get reports whether the set holds an element with the given key and
// returns its data (data maps) or verdict (verdict maps). A set read from
// the kernel decodes that value alone (Lookup would decode and index every
// element).
func (s *Set) Get(key ...Value) (data []Value, verdict *Verdict, ok bool) {
	if s.raw != nil {
		return s.getRaw(key)
	}
	e, ok := s.Lookup(joinValues(key))
	return e.Data, e.Verdict, ok
}

// PrepareConcurrentGets makes Get safe for concurrent readers until the
// set is next modified: a built set indexes its elements now (its first
// Get would), a set read from the kernel only reads its raw elements.
func (s *Set) PrepareConcurrentGets() {
	if s.raw == nil {
		s.Elements()
	}
}

// Each calls fn for every element, in no particular order. A set read
// from the kernel decodes one element at a time and keeps none.
func (s *Set) Each(fn func(Element)) {
	if s.raw != nil {
		s.eachRaw(fn)
		return
	}
	for _, e := range s.Elements() {
		fn(e)
	}
}

// Len returns the number of distinct elements (of a set read from the
// kernel: of elements the kernel holds, without decoding them).
func (s *Set) Len() int {
	if s.raw != nil {
		return len(s.raw)
	}
	return len(s.Elements())
}

// SortedElements returns the elements ordered by key rendering.
func (s *Set) SortedElements() []Element {
	if s.raw != nil {
		return s.sortedRaw()
	}
	els := s.Elements()
	keys := make([]string, 0, len(els))
	for k := range els {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]Element, len(keys))
	for i, k := range keys {
		out[i] = els[k]
	}
	return out
}

// owned reports whether the set's elements are grouped by owner (built by
// a Builder) rather than flat (read from the kernel).
func (s *Set) owned() bool {
	if s.raw != nil {
		return false
	}
	_, flat := s.groups.get("")
	return !flat || s.groups.len() > 1
}

// SameShape reports whether two sets have the same type (so that one can be
// updated into the other element by element instead of being recreated).
func (s *Set) SameShape(o *Set) bool {
	return s.Name == o.Name && s.Verdict == o.Verdict && s.Comment == o.Comment && s.Proto == o.Proto &&
		s.Dynamic == o.Dynamic && s.Timeout == o.Timeout &&
		datatypesEqual(s.Key, o.Key) && datatypesEqual(s.Data, o.Data)
}

func datatypesEqual(a, b []Datatype) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Datatype is the type of one field of a set key or map value.
type Datatype int

const (
	TypeIPv4Addr Datatype = iota + 1
	TypeIPv6Addr
	TypeInetProto
	TypeInetService
	// TypeIndex is the 32-bit host-endian integer produced by numgen: the
	// key of the endpoint maps.
	TypeIndex
)

// AddrType returns the address datatype of a family.
func AddrType(f Family) Datatype {
	if f == IPv6 {
		return TypeIPv6Addr
	}
	return TypeIPv4Addr
}

// Value is one field of an element: an address, or a number (protocol,
// port, index) according to the set's Datatype for that field.
type Value struct {
	Addr netip.Addr
	Num  uint32
}

// AddrValue and NumValue build Values.
func AddrValue(a netip.Addr) Value { return Value{Addr: a} }
func NumValue(n uint32) Value      { return Value{Num: n} }

func (v Value) String() string { return string(v.appendTo(nil)) }

func (v Value) appendTo(b []byte) []byte {
	if v.Addr.IsValid() {
		return v.Addr.AppendTo(b)
	}
	return strconv.AppendUint(b, uint64(v.Num), 10)
}

// Element is a set element or map entry.
type Element struct {
	Key     []Value
	Data    []Value  // data maps
	Verdict *Verdict // verdict maps
}

// KeyString renders the key the way nft prints it (fields joined by " . ").
func (e Element) KeyString() string { return joinValues(e.Key) }

// ValueString renders the data or verdict of a map element.
func (e Element) ValueString() string {
	if e.Verdict != nil {
		return e.Verdict.String()
	}
	return joinValues(e.Data)
}

// joinValues renders fields joined by " . " with one allocation (keys
// are rendered for every element a Build or Diff looks at).
func joinValues(vs []Value) string {
	var buf [128]byte
	return string(appendJoined(buf[:0], vs))
}

// appendJoined appends what joinValues returns (for map lookups by a
// rendered key without allocating it).
func appendJoined(b []byte, vs []Value) []byte {
	for i, v := range vs {
		if i > 0 {
			b = append(b, " . "...)
		}
		b = v.appendTo(b)
	}
	return b
}

// Equal reports whether two elements have the same key and value.
func (e Element) Equal(o Element) bool {
	return e.KeyString() == o.KeyString() && e.ValueString() == o.ValueString() &&
		(e.Verdict == nil) == (o.Verdict == nil)
}

// VerdictKind is what a verdict does.
type VerdictKind string

const (
	Accept VerdictKind = "accept"
	Drop   VerdictKind = "drop"
	Return VerdictKind = "return"
	Jump   VerdictKind = "jump"
	Goto   VerdictKind = "goto"
)

// Verdict is a verdict, with a target chain for jump and goto.
type Verdict struct {
	Kind  VerdictKind
	Chain string
}

func (v Verdict) String() string {
	if v.Chain != "" {
		return string(v.Kind) + " " + v.Chain
	}
	return string(v.Kind)
}
