package nft

import (
	"fmt"
	"math/rand"
	"net/netip"
	"slices"
	"testing"
)

// TestDiffRawMatchesIndexed: diffing a desired set against one read from
// the kernel (raw elements) gives the same changes as the indexed path
// on the decoded set, for every kind of set and random differences:
// missing, extra and changed elements, keys several owners share.
func TestDiffRawMatchesIndexed(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}) }
	kinds := []struct {
		name string
		mk   func() *Set
		el   func(i, v int) Element
	}{
		{"hairpin", func() *Set {
			return &Set{Name: "hairpin", Key: []Datatype{TypeIPv4Addr, TypeIPv4Addr}, SharedKeys: true}
		},
			func(i, _ int) Element { return Element{Key: []Value{AddrValue(addr(i)), AddrValue(addr(i))}} }},
		{"service-ips", func() *Set {
			return &Set{Name: "service-ips", Key: []Datatype{TypeIPv4Addr, TypeInetProto, TypeInetService}, Verdict: true}
		}, func(i, v int) Element {
			verdict := &Verdict{Kind: Goto, Chain: fmt.Sprintf("svc-%d-%d", i, v)}
			if v == 2 {
				verdict = &Verdict{Kind: Drop}
			}
			return Element{Key: dispatchKey(addr(i), TCP, 80), Verdict: verdict}
		}},
		{"endpoints", func() *Set {
			return &Set{Name: "endpoints-tcp-0", Key: []Datatype{TypeIndex}, Data: []Datatype{TypeIPv4Addr, TypeInetService}, Proto: TCP}
		},
			func(i, v int) Element {
				return Element{Key: []Value{NumValue(uint32(i))}, Data: []Value{AddrValue(addr(i + v)), NumValue(8080)}}
			}},
	}
	for _, k := range kinds {
		for round := 0; round < 50; round++ {
			// The kernel's set: elements 0..n with value 0.
			n := rng.Intn(40)
			kernel := k.mk()
			for i := 0; i < n; i++ {
				if rng.Intn(5) > 0 {
					kernel.Put(k.el(i, 0))
				}
			}
			raw := rawCopy(t, kernel, k.mk())
			// The desired set, grouped by owner, some values changed and
			// (hairpin) some keys under two owners.
			want := k.mk()
			want.groups = &ownerGroups{}
			for o := 0; o < 4; o++ {
				var g []Element
				for i := o; i < n+3; i += 4 {
					if rng.Intn(6) > 0 {
						g = append(g, k.el(i, rng.Intn(3)/2*rng.Intn(3)))
					}
				}
				if k.name == "hairpin" && len(g) > 0 && o > 0 {
					g = append(g, k.el(0, 0))
				}
				pg := packGroup(want, g)
				want.groups.set(fmt.Sprint("owner-", o), pg)
				if want.SharedKeys {
					if want.refs == nil {
						want.refs = &keyCounts{}
					}
					want.refs.add(want, pg)
				}
			}
			gotAdd, gotDel := diffRaw(raw, want)
			wantAdd, wantDel := diffElementsIndexed(kernel, want)
			if !sameElements(gotAdd, wantAdd) || !sameElements(gotDel, wantDel) {
				t.Fatalf("%s round %d:\nraw     add %v del %v\nindexed add %v del %v", k.name, round,
					render(gotAdd), render(gotDel), render(wantAdd), render(wantDel))
			}
		}
	}
}

// rawCopy fills into with the elements of kernel as readRaw stores them.
func rawCopy(t *testing.T, kernel, into *Set) *Set {
	t.Helper()
	into.raw = map[string]rawElement{}
	for _, e := range kernel.SortedElements() {
		key, err := appendValues(nil, into.Key, e.Key)
		if err != nil {
			t.Fatal(err)
		}
		var val []byte
		switch {
		case into.Verdict:
			val = rawVerdict(*e.Verdict)
		case len(into.Data) > 0:
			val, _ = appendValues(nil, into.Data, e.Data)
		}
		into.raw[string(key)] = rawElement{val: val}
	}
	return into
}

// TestRawReadersMatchDecoded: Get, Each, Len and SortedElements of
// a set read from the kernel, which decode elements one at a time, give
// what the decoded and indexed set gives, present and absent keys alike.
func TestRawReadersMatchDecoded(t *testing.T) {
	addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}) }
	mk := func() *Set {
		return &Set{Name: "service-ips", Key: []Datatype{TypeIPv4Addr, TypeInetProto, TypeInetService}, Verdict: true}
	}
	kernel := mk()
	for i := 0; i < 300; i += 3 {
		kernel.Put(Element{Key: dispatchKey(addr(i), TCP, uint16(i)), Verdict: &Verdict{Kind: Goto, Chain: fmt.Sprint("svc-", i)}})
	}
	raw := rawCopy(t, kernel, mk())
	if raw.Len() != kernel.Len() || raw.raw == nil {
		t.Fatalf("Len %d (raw kept: %v), want %d", raw.Len(), raw.raw != nil, kernel.Len())
	}
	var each []Element
	raw.Each(func(e Element) { each = append(each, e) })
	if !sameElements(each, kernel.SortedElements()) {
		t.Fatalf("Each gives %v", render(each))
	}
	if got, want := render(raw.SortedElements()), render(kernel.SortedElements()); !slices.Equal(got, want) {
		t.Fatalf("SortedElements gives %v, want %v", got, want)
	}
	for i := 0; i < 300; i++ {
		key := dispatchKey(addr(i), TCP, uint16(i))
		_, v, gotOK := raw.Get(key...)
		want, wantOK := kernel.Lookup(Element{Key: key}.KeyString())
		got := Element{Key: key, Verdict: v}
		if gotOK != wantOK || (gotOK && !sameElements([]Element{got}, []Element{want})) {
			t.Fatalf("Get(%v) = %v %v, want %v %v", key, render([]Element{got}), gotOK, render([]Element{want}), wantOK)
		}
	}
	if _, _, ok := raw.Get(AddrValue(addr(0))); ok {
		t.Fatal("Get found a key of the wrong shape")
	}
	if raw.raw == nil {
		t.Fatal("reading decoded and indexed the raw set")
	}

	eps := &Set{Name: "endpoints-tcp-0", Key: []Datatype{TypeIndex}, Data: []Datatype{TypeIPv4Addr, TypeInetService}, Proto: TCP}
	for i := 0; i < 100; i += 2 {
		eps.Put(Element{Key: []Value{NumValue(uint32(i))}, Data: []Value{AddrValue(addr(i)), NumValue(uint32(8000 + i))}})
	}
	rawEps := rawCopy(t, eps, &Set{Name: eps.Name, Key: eps.Key, Data: eps.Data, Proto: eps.Proto})
	for i := uint32(0); i < 100; i++ {
		data, _, gotOK := rawEps.Get(NumValue(i))
		want, wantOK := eps.Lookup(fmt.Sprint(i))
		if gotOK != wantOK || joinValues(data) != joinValues(want.Data) {
			t.Fatalf("Get(%d) = %v %v, want %v %v", i, data, gotOK, want.Data, wantOK)
		}
	}
}

// TestAppendValueMatchesEncodeValue: the allocation-free encoding of
// every field type is encodeValue's, alone and as part of a
// concatenation (padded to 4 bytes).
func TestAppendValueMatchesEncodeValue(t *testing.T) {
	for _, c := range []struct {
		t Datatype
		v Value
	}{
		{TypeIPv4Addr, AddrValue(netip.MustParseAddr("10.1.2.3"))},
		{TypeIPv6Addr, AddrValue(netip.MustParseAddr("fd00::1"))},
		{TypeInetProto, NumValue(6)},
		{TypeInetService, NumValue(8080)},
		{TypeIndex, NumValue(0x01020304)},
	} {
		for _, concat := range []bool{false, true} {
			want, err := encodeValue(c.t, c.v, concat)
			if err != nil {
				t.Fatal(err)
			}
			got, err := appendValue([]byte{0xff}, c.t, c.v, concat)
			if err != nil || !slices.Equal(got, append([]byte{0xff}, want...)) {
				t.Errorf("appendValue(%s, %v, concat %v) = %x, %v; want ff%x", c.t, c.v, concat, got, err, want)
			}
		}
	}
}

// rawVerdict encodes a verdict as the kernel dumps it (NFTA_DATA_VERDICT's
// attributes).
func rawVerdict(v Verdict) []byte {
	b := attr(nil, 1, be32(uint32(verdictKinds[v.Kind]))) // NFTA_VERDICT_CODE
	if v.Chain != "" {
		b = attr(b, 2, append([]byte(v.Chain), 0)) // NFTA_VERDICT_CHAIN
	}
	return b
}

func be32(v uint32) []byte { return []byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)} }

func render(els []Element) []string {
	var out []string
	for _, e := range els {
		out = append(out, e.KeyString()+" : "+e.ValueString())
	}
	slices.Sort(out)
	return out
}

func sameElements(a, b []Element) bool { return slices.Equal(render(a), render(b)) }

// TestColdDiffListsSharedKeysOnce: against an empty kernel set, a set whose
// owners share keys (the hairpin set) is added with every key once, in
// owner order, however many owners hold it.
func TestColdDiffListsSharedKeysOnce(t *testing.T) {
	addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 1, 0, byte(i)}) }
	el := func(i int) Element { return Element{Key: []Value{AddrValue(addr(i)), AddrValue(addr(i))}} }
	want := &Set{Name: "hairpin", Key: []Datatype{TypeIPv4Addr, TypeIPv4Addr}, SharedKeys: true,
		groups: &ownerGroups{}, refs: &keyCounts{}}
	for o, g := range [][]Element{{el(1), el(2)}, {el(2), el(3)}, {el(4)}, {el(2), el(1), el(5)}} {
		pg := packGroup(want, g)
		want.groups.set(fmt.Sprint("owner-", o), pg)
		want.refs.add(want, pg)
	}
	add, del := diffElements(nil, want)
	got := make([]string, len(add))
	for i, e := range add {
		got[i] = e.KeyString()
	}
	wantKeys := []string{"10.1.0.1 . 10.1.0.1", "10.1.0.2 . 10.1.0.2", "10.1.0.3 . 10.1.0.3", "10.1.0.4 . 10.1.0.4", "10.1.0.5 . 10.1.0.5"}
	if len(del) != 0 || !slices.Equal(got, wantKeys) {
		t.Fatalf("cold diff adds %v, deletes %v; want %v and nothing", got, render(del), wantKeys)
	}
}
