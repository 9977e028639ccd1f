package nft

import (
	"bytes"
	"fmt"
	"net/netip"
	"reflect"
	"testing"

	"golang.org/x/sys/unix"
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
		if g.isPacked() != c.packed {
			t.Errorf("%s: packed %v, want %v", c.name, g.isPacked(), c.packed)
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
	unpacked := unpackedGroup([]Element{{Key: k}})
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

// TestColdAddEncodesPackedGroupsAsElements: a cold sync's element ops
// carry the Builder's groups still packed; they encode to the very
// messages the same elements encode to as Elements (which
// TestElementMessagesMatchLibrary holds to google/nftables), in both
// families, for sets, data maps and verdict maps, with the repeats of a
// key several owners share left out as Diff lists them.
func TestColdAddEncodesPackedGroupsAsElements(t *testing.T) {
	rs := NewRuleset()
	for _, f := range Families {
		rs.Table(f)
	}
	d := rs.Derive()
	addr := func(f Family, i int) Value {
		if f == IPv6 {
			return AddrValue(netip.AddrFrom16([16]byte{0: 0xfd, 14: byte(i >> 8), 15: byte(i)}))
		}
		return AddrValue(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}))
	}
	for _, f := range Families {
		newSet := func(f Family, name string) *Set {
			switch name {
			case "endpoints":
				return &Set{Name: name, Key: []Datatype{TypeIndex}, Data: []Datatype{AddrType(f), TypeInetService}}
			case "service-ips":
				return &Set{Name: name, Key: []Datatype{AddrType(f), TypeInetProto, TypeInetService}, Verdict: true}
			}
			return &Set{Name: name, Key: []Datatype{AddrType(f), AddrType(f)}, SharedKeys: true}
		}
		for o := range 300 { // several messages' worth per set
			owner := fmt.Sprint("service-", o)
			v := Verdict{Kind: Goto, Chain: owner}
			d.SetGroup(f, "service-ips", owner, []Element{{Key: []Value{addr(f, o), NumValue(6), NumValue(80)}, Verdict: &v}}, newSet)
			var eps, hairpin []Element
			for i := range 10 {
				pod := addr(f, o*5+i) // neighbours share half their pods
				eps = append(eps, Element{Key: []Value{NumValue(uint32(o<<10 + i))}, Data: []Value{pod, NumValue(8080)}})
				hairpin = append(hairpin, Element{Key: []Value{pod, pod}})
			}
			d.SetGroup(f, "endpoints", owner, eps, newSet)
			d.SetGroup(f, "hairpin", owner, hairpin, newSet)
		}
	}
	tx := Diff(nil, d.Ruleset())
	asElements := &Transaction{}
	packedOps := 0
	for _, op := range tx.Ops {
		if op.packed != nil {
			packedOps++
		}
		want := op.Len()
		op.Elements, op.packed = op.ElementList(), nil
		if len(op.Elements) != want {
			t.Fatalf("%s %s: %d elements decoded, Len says %d", op.Kind, op.Set.Name, len(op.Elements), want)
		}
		asElements.Ops = append(asElements.Ops, op)
	}
	if packedOps != 6 {
		t.Fatalf("%d ops with packed groups, want 6 (3 sets in 2 families)", packedOps)
	}
	if n := tx.Objects(); n != asElements.Objects() || n != 2*(4+300+3000+1505) {
		t.Fatalf("objects: %d packed, %d as elements, want %d (a table, 3 sets and their elements per family)", n, asElements.Objects(), 2*(4+300+3000+1505))
	}
	got, _, err := encodeTx(tx)
	if err != nil {
		t.Fatal(err)
	}
	want, _, err := encodeTx(asElements)
	if err != nil {
		t.Fatal(err)
	}
	gm, wm := batchMessages(t, got), batchMessages(t, want)
	if len(gm) != len(wm) {
		t.Fatalf("%d messages packed, %d as elements", len(gm), len(wm))
	}
	for i := range gm {
		if gm[i].Header.Type&0xff == unix.NFT_MSG_NEWSET {
			continue // the encoders number sets from a counter they share
		}
		if gm[i].Header != wm[i].Header || !bytes.Equal(withoutSetID(t, gm[i].Data), withoutSetID(t, wm[i].Data)) {
			t.Fatalf("message %d differs:\npacked   %x\nelements %x", i, gm[i].Data, wm[i].Data)
		}
	}
}

// withoutSetID returns an element message's data without the set ID
// attribute (see the NEWSET note above).
func withoutSetID(t *testing.T, data []byte) []byte {
	t.Helper()
	out := append([]byte(nil), data[:4]...)
	if err := walkAttrs(data[4:], func(typ uint16, p []byte) error {
		if typ != unix.NFTA_SET_ELEM_LIST_SET_ID {
			out = attr(out, typ, p)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestPackerCollectsWhatSetGroupWouldKeep: elements collected by a Packer
// come back from the ruleset as the same elements SetGroup would keep,
// packed when they fit the set's types, as Elements when one does not.
func TestPackerCollectsWhatSetGroupWouldKeep(t *testing.T) {
	v4 := AddrValue(netip.MustParseAddr("10.1.2.3"))
	mapped := AddrValue(netip.MustParseAddr("::ffff:10.1.2.3"))
	key, data := []Datatype{TypeIndex}, []Datatype{TypeIPv4Addr, TypeInetService}
	newSet := func(Family, string) *Set { return &Set{Name: "endpoints", Key: key, Data: data} }
	for _, c := range []struct {
		name   string
		addrs  []Value
		packed bool
	}{
		{"all fit", []Value{v4, v4}, true},
		{"one IPv4-mapped", []Value{v4, mapped, v4}, false},
	} {
		p := NewPacker(key, data, len(c.addrs))
		var want []Element
		for i, a := range c.addrs {
			k, d := []Value{NumValue(uint32(i))}, []Value{a, NumValue(80)}
			p.Add(k, d)
			want = append(want, Element{Key: k, Data: d})
		}
		rs := NewRuleset()
		rs.Table(IPv4)
		dv := rs.Derive()
		dv.SetPacked(IPv4, "endpoints", "owner", p, newSet)
		s := dv.Ruleset().Tables[IPv4].Sets.Get("endpoints")
		g, _ := s.groups.get("owner")
		if g.isPacked() != c.packed || !reflect.DeepEqual(g.elements(s), want) {
			t.Errorf("%s: packed %v (want %v), elements %v, want %v", c.name, g.isPacked(), c.packed, g.elements(s), want)
		}
	}
}
