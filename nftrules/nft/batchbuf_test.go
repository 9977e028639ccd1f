package nft

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// framed is one netlink message as it lies in a batch.
type framed struct {
	typ   uint16
	flags uint16
	seq   uint32
	data  []byte // payload, with its padding
}

// parseBatch splits a finished batch into its messages (markers included),
// checking that none spans two chunks.
func parseBatch(t *testing.T, chunks [][]byte) []framed {
	t.Helper()
	var out []framed
	for i, c := range chunks {
		for len(c) > 0 {
			if len(c) < unix.NLMSG_HDRLEN {
				t.Fatalf("chunk %d ends with %d bytes of a header", i, len(c))
			}
			l := int(binary.NativeEndian.Uint32(c))
			if l < unix.NLMSG_HDRLEN || l > len(c) || l%unix.NLMSG_ALIGNTO != 0 {
				t.Fatalf("chunk %d: message of length %d in %d bytes left", i, l, len(c))
			}
			out = append(out, framed{
				typ: binary.NativeEndian.Uint16(c[4:]), flags: binary.NativeEndian.Uint16(c[6:]),
				seq: binary.NativeEndian.Uint32(c[8:]), data: c[unix.NLMSG_HDRLEN:l],
			})
			c = c[l:]
		}
	}
	return out
}

// batchMessages returns the messages of an encoded (unfinished) batch, as
// the library would have queued them (Acknowledge asked of each).
func batchMessages(t *testing.T, b *batchBuf) []netlink.Message {
	t.Helper()
	copied := &batchBuf{chunks: make([][]byte, len(b.chunks)), n: b.n, last: b.last, next: b.next}
	for i, c := range b.chunks {
		copied.chunks[i] = append([]byte(nil), c...)
	}
	chunks, err := copied.finish()
	if err != nil {
		t.Fatal(err)
	}
	all := parseBatch(t, chunks)
	var out []netlink.Message
	for _, m := range all[1 : len(all)-1] {
		out = append(out, netlink.Message{
			Header: netlink.Header{Type: netlink.HeaderType(m.typ), Flags: netlink.HeaderFlags(m.flags) | netlink.Acknowledge},
			Data:   m.data,
		})
	}
	return out
}

// TestBatchFraming: a batch is the begin marker, the messages numbered
// from 2 in order, and the end marker; only the last message asks for an
// ACK; messages never span chunks, chunks grow to maxChunk and no further.
func TestBatchFraming(t *testing.T) {
	b := newBatchBuf()
	const n = 5000
	for i := range n {
		payload := bytes.Repeat([]byte{byte(i)}, 1+i%700) // lengths not aligned
		if err := b.add(netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_NEWRULE), netlink.Request|netlink.Acknowledge, payload); err != nil {
			t.Fatal(err)
		}
	}
	chunks, err := b.finish()
	if err != nil {
		t.Fatal(err)
	}
	msgs := parseBatch(t, chunks)
	if len(msgs) != n+2 {
		t.Fatalf("%d messages, want %d and the two markers", len(msgs), n)
	}
	if msgs[0].typ != unix.NFNL_MSG_BATCH_BEGIN || msgs[0].seq != 1 || msgs[n+1].typ != unix.NFNL_MSG_BATCH_END || msgs[n+1].seq != n+2 {
		t.Errorf("markers %+v / %+v", msgs[0], msgs[n+1])
	}
	for i, m := range msgs[1 : n+1] {
		want := bytes.Repeat([]byte{byte(i)}, 1+i%700)
		if m.seq != uint32(i+2) || !bytes.Equal(m.data[:len(want)], want) || len(m.data)-len(want) > 3 {
			t.Fatalf("message %d: seq %d, %d bytes; want seq %d, %d bytes padded", i, m.seq, len(m.data), i+2, len(want))
		}
		if ack := m.flags&uint16(netlink.Acknowledge) != 0; ack != (i == n-1) {
			t.Errorf("message %d: ACK asked %v", i, ack)
		}
	}
	for i, c := range chunks {
		if cap(c) > maxChunk {
			t.Errorf("chunk %d has a capacity of %d bytes", i, cap(c))
		}
	}
	if len(chunks) < 3 {
		t.Errorf("%d chunks for %d messages: the test does not cross chunks", len(chunks), n)
	}
}

// TestRuleMessagesMatchLibrary: the rule messages we encode (rulemsg.go)
// are byte for byte what google/nftables v0.3.0's AddRule queues for the
// same rule, for every statement we program, in both families.
func TestRuleMessagesMatchLibrary(t *testing.T) {
	long := strings.Repeat("c", 110)
	for _, f := range Families {
		addr, prefix, odd := netip.MustParseAddr("10.0.0.1"), netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("10.64.0.0/10")
		if f == IPv6 {
			addr, prefix, odd = netip.MustParseAddr("fd00::1"), netip.MustParsePrefix("fd00::/64"), netip.MustParsePrefix("fd00::/63")
		}
		dispatch := []Field{FieldDaddr, FieldL4Proto, FieldDport}
		rules := [][]Stmt{
			{MatchL4Proto{Proto: TCP}, DNATToEndpoint{Count: 10, Offset: 16384, Map: "endpoints-tcp-1"}},
			{MatchL4Proto{Proto: UDP}, DNATToEndpoint{Count: 1, Map: "endpoints-udp-0"}},
			{MatchPrefix{Field: FieldSaddr, Prefix: prefix}, MatchPrefix{Field: FieldDaddr, Negate: true, Prefix: odd}, ReturnStmt},
			{MatchFibSaddrLocal{}, JumpTo("mark-for-masquerade")},
			{MatchCtStateNew{}, VmapLookup{Fields: dispatch, Map: "firewall-ips"}},
			{MatchCtStatusDNAT{}, SetLookup{Fields: []Field{FieldSaddr, FieldDaddr}, Set: "hairpin"}, JumpTo("mark-for-masquerade")},
			{MatchMarkUnset{Bits: 0x4000}, ReturnStmt},
			{SetMarkBits{Bits: 0x4000}},
			{ClearMarkBits{Bits: 0x4000}},
			{SetLookup{Fields: []Field{FieldDaddr}, Set: "nodeport-ips"}, VmapLookup{Fields: []Field{FieldL4Proto, FieldDport}, Map: "service-nodeports"}},
			{Masquerade{}},
			{MatchL4Proto{Proto: TCP}, RejectTCPReset{}},
			{Reject{}},
			{UpdateSourceSet{Set: "affinity-x"}, MatchL4Proto{Proto: SCTP}, DNATTo{To: netip.AddrPortFrom(addr, 8080)}},
			{NumgenVmap{Count: 3, Offset: 7, Map: "endpoint-chains-0"}},
			{Counter{}, DropStmt},
			{GotoChain(long)},
			{SetLookup{Fields: dispatch, Set: long}, VmapLookup{Fields: dispatch, Map: long}}, // identity deflated
			{VmapLookup{Fields: dispatch, Map: scrambled(600)}},                               // identity hashed
		}
		for _, stmts := range rules {
			r := Rule{Stmts: stmts}
			chain := &Chain{Name: "svc-" + long}
			ours := newTestEncoder(t)
			if err := ours.addRule(f, chain.Name, r); err != nil {
				t.Fatalf("%s: %v", r.Render(f), err)
			}
			lib := newTestEncoder(t)
			exprs, err := compileRule(f, r)
			if err != nil {
				t.Fatal(err)
			}
			lib.c.AddRule(&nftables.Rule{Table: nlTable(f), Chain: nlChain(f, chain), Exprs: exprs, UserData: ruleUserData(ruleIdentity(f, r))})
			lib.pending++
			if err := lib.flush(); err != nil {
				t.Fatal(err)
			}
			got, want := batchMessages(t, ours.b), batchMessages(t, lib.b)
			if len(got) != 1 || len(want) != 1 {
				t.Fatalf("%s: %d messages ours, %d the library's; want 1 each", r.Render(f), len(got), len(want))
			}
			// The one intended difference: the library asks for an echo.
			if want[0].Header.Flags&unix.NLM_F_ECHO == 0 {
				t.Fatalf("the library's NEWRULE carries no NLM_F_ECHO any more (%v): revisit ruleMsgFlags", want[0].Header.Flags)
			}
			want[0].Header.Flags &^= unix.NLM_F_ECHO
			if got[0].Header != want[0].Header || !bytes.Equal(got[0].Data, want[0].Data) {
				t.Errorf("%s %s:\nours    %v %x\nlibrary %v %x", f, r.Render(f), got[0].Header, got[0].Data, want[0].Header, want[0].Data)
			}
		}
	}
}

// compileRule returns the expressions of a rule: what the library is
// given to encode, for comparison.
func compileRule(f Family, r Rule) ([]expr.Any, error) {
	var out []expr.Any
	for _, s := range r.Stmts {
		e, err := compileStmt(f, s)
		if err != nil {
			return nil, fmt.Errorf("rule %q: %w", r.Render(f), err)
		}
		out = append(out, e...)
	}
	return out, nil
}

// scrambled returns n letters that do not deflate to 240 bytes.
func scrambled(n int) string {
	b := make([]byte, n)
	x := uint32(1)
	for i := range b {
		x = x*1103515245 + 12345
		b[i] = 'a' + byte(x>>16)%26
	}
	return string(b)
}

// TestChainMessagesMatchLibrary: the NEWCHAIN messages we encode for
// regular chains are byte for byte v0.3.0's AddChain's, in both families.
func TestChainMessagesMatchLibrary(t *testing.T) {
	for _, f := range Families {
		for _, name := range []string{"services", "svc-" + strings.Repeat("c", 110), "ext-abc"} {
			ours := newTestEncoder(t)
			if err := encodeOp(ours, Op{Kind: OpAddChain, Family: f, Chain: &Chain{Name: name}}); err != nil {
				t.Fatal(err)
			}
			lib := newTestEncoder(t)
			lib.c.AddChain(nlChain(f, &Chain{Name: name}))
			lib.pending++
			if err := lib.flush(); err != nil {
				t.Fatal(err)
			}
			got, want := batchMessages(t, ours.b), batchMessages(t, lib.b)
			if len(got) != 1 || len(want) != 1 || got[0].Header != want[0].Header || !bytes.Equal(got[0].Data, want[0].Data) {
				t.Errorf("%s chain %s:\nours    %v\nlibrary %v", f, name, got, want)
			}
		}
	}
}
