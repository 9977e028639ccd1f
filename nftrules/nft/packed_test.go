package nft

import (
	"net/netip"
	"reflect"
	"testing"
)

// TestPackedGroupsGiveBackTheirElements: a group kept packed decodes to
// the elements it was made of, for every kind of field and value we
// program; elements that would not come back unchanged (a field of
// another type, an address with a zone, an IPv4-mapped address in an
// IPv4 field, data on a set without data) are kept as they are.
func TestPackedGroupsGiveBackTheirElements(t *testing.T) {
	v4 := AddrValue(netip.MustParseAddr("10.1.2.3"))
	v6 := AddrValue(netip.MustParseAddr("fd00::1"))
	mapped := AddrValue(netip.MustParseAddr("::ffff:10.1.2.3"))
	zoned := AddrValue(netip.MustParseAddr("fe80::1%eth0"))
	verdict := Verdict{Kind: Goto, Chain: "service-x"}
	epMap := &Set{Key: []Datatype{TypeIndex}, Data: []Datatype{TypeIPv4Addr, TypeInetService}}
	epMap6 := &Set{Key: []Datatype{TypeIndex}, Data: []Datatype{TypeIPv6Addr, TypeInetService}}
	dispatch := &Set{Key: []Datatype{TypeIPv4Addr, TypeInetProto, TypeInetService}, Verdict: true}
	hairpin := &Set{Key: []Datatype{TypeIPv6Addr, TypeIPv6Addr}}
	port := &Set{Key: []Datatype{TypeInetService}}
	for _, c := range []struct {
		name   string
		set    *Set
		els    []Element
		packed bool
	}{
		{"endpoint map", epMap, []Element{{Key: []Value{NumValue(1 << 20)}, Data: []Value{v4, NumValue(8080)}}, {Key: []Value{NumValue(7)}, Data: []Value{v4, NumValue(65535)}}}, true},
		{"IPv6 endpoint map", epMap6, []Element{{Key: []Value{NumValue(3)}, Data: []Value{v6, NumValue(53)}}}, true},
		{"IPv4-mapped in an IPv6 field", epMap6, []Element{{Key: []Value{NumValue(3)}, Data: []Value{mapped, NumValue(53)}}}, true},
		{"verdict map", dispatch, []Element{{Key: []Value{v4, NumValue(6), NumValue(80)}, Verdict: &verdict}}, true},
		{"unconcatenated port", port, []Element{{Key: []Value{NumValue(30000)}}}, true},
		{"empty", port, nil, true},
		{"IPv4-mapped in an IPv4 field", epMap, []Element{{Key: []Value{NumValue(1)}, Data: []Value{mapped, NumValue(80)}}}, false},
		{"zone", hairpin, []Element{{Key: []Value{v6, zoned}}}, false},
		{"port too large", port, []Element{{Key: []Value{NumValue(1 << 16)}}}, false},
		{"number in an address field", hairpin, []Element{{Key: []Value{v6, NumValue(1)}}}, false},
		{"data on a set", port, []Element{{Key: []Value{NumValue(80)}, Data: []Value{v4}}}, false},
		{"verdict map element without verdict", dispatch, []Element{{Key: []Value{v4, NumValue(6), NumValue(80)}}}, false},
	} {
		g := packGroup(c.set, c.els)
		if g.isPacked != c.packed {
			t.Errorf("%s: packed %v, want %v", c.name, g.isPacked, c.packed)
		}
		if got := g.elements(c.set); g.len() != len(c.els) || (len(c.els) > 0 && !reflect.DeepEqual(got, c.els)) {
			t.Errorf("%s: got back %v (len %d), want %v", c.name, got, g.len(), c.els)
		}
	}
}

// TestRefKeysAgreeBetweenPackedAndNot: the reference counts of a set
// whose owners share keys count a key the same whether the group holding
// it was packed or kept as Elements.
func TestRefKeysAgreeBetweenPackedAndNot(t *testing.T) {
	s := &Set{Key: []Datatype{TypeIPv4Addr, TypeIPv4Addr}, SharedKeys: true}
	a := AddrValue(netip.MustParseAddr("10.0.0.1"))
	k := []Value{a, a}
	packed := packGroup(s, []Element{{Key: k}})
	unpacked := &elemGroup{els: []Element{{Key: k}}, n: 1}
	refs := &keyCounts{}
	refs.add(s, packed)
	refs.add(s, unpacked)
	s.refs = refs
	var kb [80]byte
	if got := refs.getBytes(s.refKey(kb[:0], k)); got != 2 || !s.holds(k) {
		t.Fatalf("count %d, holds %v: want 2, true", got, s.holds(k))
	}
	refs.remove(s, packed)
	refs.remove(s, unpacked)
	if s.holds(k) || refs.len() != 0 {
		t.Fatalf("after removing both: holds %v, %d keys", s.holds(k), refs.len())
	}
}
