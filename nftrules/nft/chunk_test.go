package nft

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// queueForTest encodes tx as apply does and returns its messages.
func queueForTest(t *testing.T, tx *Transaction) []netlink.Message {
	t.Helper()
	b, _, err := encodeTx(tx)
	if err != nil {
		t.Fatal(err)
	}
	return batchMessages(t, b)
}

// newTestEncoder is newEncoder, failing t on error.
func newTestEncoder(t *testing.T) *encoder {
	t.Helper()
	e, err := newEncoder()
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// elemListAttr returns the set name of an element message and the length
// its NFTA_SET_ELEM_LIST_ELEMENTS attribute declares and really has
// (google/nftables puts it last, so it runs to the end of the message).
func elemListAttr(t *testing.T, data []byte) (set string, declared, actual int) {
	t.Helper()
	b := data[4:] // nfgenmsg
	for len(b) >= 4 {
		l, typ := int(nlUint16(b[0:2])), nlUint16(b[2:4])&^unix.NLA_F_NESTED
		switch typ {
		case unix.NFTA_SET_ELEM_LIST_ELEMENTS:
			return set, l, len(b)
		case unix.NFTA_SET_ELEM_LIST_SET:
			set = strings.TrimRight(string(b[4:l]), "\x00")
		}
		b = b[(l+3)&^3:]
	}
	t.Fatalf("element message without element list")
	return
}

// TestElementMessagesMatchLibrary: the element messages we encode
// (elemmsg.go) are byte for byte what google/nftables v0.3.0 queues for
// the same elements, for every kind of set we program, both families, add
// and delete.
func TestElementMessagesMatchLibrary(t *testing.T) {
	long := strings.Repeat("c", 110)
	for _, f := range Families {
		addr := netip.MustParseAddr("10.0.0.1")
		if f == IPv6 {
			addr = netip.MustParseAddr("fd00::1")
		}
		goTo := &Verdict{Kind: Goto, Chain: long}
		sets := []struct {
			set *Set
			els []Element
		}{
			{&Set{Name: "cluster-ips", Key: []Datatype{AddrType(f)}}, []Element{{Key: []Value{AddrValue(addr)}}}},
			{&Set{Name: "hairpin", Key: []Datatype{AddrType(f), AddrType(f)}}, []Element{{Key: []Value{AddrValue(addr), AddrValue(addr)}}}},
			{&Set{Name: "service-ips", Key: []Datatype{AddrType(f), TypeInetProto, TypeInetService}, Verdict: true}, []Element{
				{Key: dispatchKey(addr, TCP, 80), Verdict: goTo},
				{Key: dispatchKey(addr, UDP, 53), Verdict: &Verdict{Kind: Goto, Chain: "svc-x"}},
				{Key: dispatchKey(addr, SCTP, 9), Verdict: &Verdict{Kind: Drop}},
			}},
			{&Set{Name: "service-nodeports", Key: []Datatype{TypeInetProto, TypeInetService}, Verdict: true}, []Element{
				{Key: []Value{NumValue(uint32(TCP)), NumValue(30080)}, Verdict: &Verdict{Kind: Goto, Chain: "reject-chain"}}}},
			{&Set{Name: "endpoints-tcp-3", Key: []Datatype{TypeIndex}, Data: []Datatype{AddrType(f), TypeInetService}, Proto: TCP}, []Element{
				{Key: []Value{NumValue(3 << 14)}, Data: []Value{AddrValue(addr), NumValue(8080)}},
				{Key: []Value{NumValue(3<<14 + 1)}, Data: []Value{AddrValue(addr), NumValue(1)}}}},
			{&Set{Name: "endpoint-chains-3", Key: []Datatype{TypeIndex}, Verdict: true}, []Element{{Key: []Value{NumValue(7)}, Verdict: goTo}}},
		}
		for _, tc := range sets {
			for _, kind := range []OpKind{OpAddElements, OpDelElements} {
				ours := newTestEncoder(t)
				if err := encodeElements(ours, Op{Kind: kind, Family: f, Set: tc.set, Elements: tc.els}); err != nil {
					t.Fatal(err)
				}
				lib := newTestEncoder(t)
				ns, err := nlSet(f, tc.set)
				if err != nil {
					t.Fatal(err)
				}
				var nes []nftables.SetElement
				for _, e := range tc.els {
					ne, err := nlElement(tc.set, e)
					if err != nil {
						t.Fatal(err)
					}
					nes = append(nes, ne)
				}
				if kind == OpAddElements {
					err = lib.c.SetAddElements(ns, nes)
				} else {
					err = lib.c.SetDeleteElements(ns, nes)
				}
				if err == nil {
					lib.pending++
					err = lib.flush()
				}
				if err != nil {
					t.Fatal(err)
				}
				got, want := batchMessages(t, ours.b), batchMessages(t, lib.b)
				if len(got) != 1 || len(want) != 1 {
					t.Fatalf("%s %s %s: %d messages ours, %d the library's; want 1 each", kind, f, tc.set.Name, len(got), len(want))
				}
				if got[0].Header != want[0].Header || !bytes.Equal(got[0].Data, want[0].Data) {
					t.Errorf("%s %s %s:\nours    %v %x\nlibrary %v %x", kind, f, tc.set.Name, got[0].Header, got[0].Data, want[0].Header, want[0].Data)
				}
			}
		}
	}
}

// TestOversizedMessagesAreErrors: an element or a rule too large for one
// netlink message is an error naming it, never a truncated message.
func TestOversizedMessagesAreErrors(t *testing.T) {
	set := &Set{Name: "m", Key: []Datatype{TypeIndex}, Verdict: true}
	huge := Element{Key: []Value{NumValue(1)}, Verdict: &Verdict{Kind: Goto, Chain: strings.Repeat("c", maxElemListBytes)}}
	chain := &Chain{Name: "long"}
	var stmts []Stmt
	for i := 0; i < 5000; i++ {
		stmts = append(stmts, Counter{})
	}
	for _, tc := range []struct {
		op   Op
		want string
	}{
		{Op{Kind: OpAddElements, Family: IPv4, Set: set, Elements: []Element{huge}}, "add elements ip set m: element 1 : goto ccc"},
		{Op{Kind: OpDelElements, Family: IPv6, Set: set, Elements: []Element{huge}}, "delete elements ip6 set m: element 1 : goto ccc"},
		{Op{Kind: OpAddRule, Family: IPv4, Chain: chain, Rule: &Rule{Stmts: stmts}}, "add rule ip chain long rule \"counter counter"},
	} {
		_, _, err := encodeTx(&Transaction{Ops: []Op{tc.op}})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got error %.300v, want one containing %q", tc.op.Kind, err, tc.want)
		}
	}
}

// dispatchKey is the key of a service-ips element (as nftrules makes it).
func dispatchKey(ip netip.Addr, p Protocol, port uint16) []Value {
	return []Value{AddrValue(ip), NumValue(uint32(p)), NumValue(uint32(port))}
}
