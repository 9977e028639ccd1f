package nft

import (
	"bytes"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"
)

// TestEncodeTxMessagesInOpOrder: a transaction mixing the library's
// encodings and ours comes out as the messages of its ops in op order,
// each op's first message where encodeTx says (across the encoder's
// periodic flushes too), an index map's NEWSET carrying nft's typeof user
// data; the ops' element lists are released once encoded.
func TestEncodeTxMessagesInOpOrder(t *testing.T) {
	chain := &Chain{Name: "c"}
	ips := &Set{Name: "ips", Key: []Datatype{TypeIPv4Addr}}
	idx := &Set{Name: "endpoint-chains-0", Key: []Datatype{TypeIndex}, Verdict: true}
	var many []Element // more than one message's worth
	for i := range 10000 {
		many = append(many, Element{Key: []Value{AddrValue(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}))}})
	}
	tx := &Transaction{Ops: []Op{
		{Kind: OpAddTable, Family: IPv4},
		{Kind: OpAddSet, Family: IPv4, Set: ips},
		{Kind: OpAddSet, Family: IPv4, Set: idx},
		{Kind: OpAddElements, Family: IPv4, Set: ips, Elements: many},
		{Kind: OpAddChain, Family: IPv4, Chain: chain},
		{Kind: OpAddRule, Family: IPv4, Chain: chain, Rule: &Rule{Stmts: []Stmt{ReturnStmt}}},
		{Kind: OpAddElements, Family: IPv4, Set: ips, Elements: many[:1]},
		{Kind: OpDelChain, Family: IPv4, Chain: chain},
	}}
	want := [][]int{
		{unix.NFT_MSG_NEWTABLE}, {unix.NFT_MSG_NEWSET}, {unix.NFT_MSG_NEWSET},
		{unix.NFT_MSG_NEWSETELEM, unix.NFT_MSG_NEWSETELEM, unix.NFT_MSG_NEWSETELEM},
		{unix.NFT_MSG_NEWCHAIN}, {unix.NFT_MSG_NEWRULE}, {unix.NFT_MSG_NEWSETELEM}, {unix.NFT_MSG_DELCHAIN},
	}
	for range flushEvery + 1 {
		tx.Ops = append(tx.Ops, Op{Kind: OpAddRule, Family: IPv4, Chain: chain, Rule: &Rule{Stmts: []Stmt{ReturnStmt}}})
		want = append(want, []int{unix.NFT_MSG_NEWRULE})
	}
	b, first, err := encodeTx(tx)
	if err != nil {
		t.Fatal(err)
	}
	msgs := batchMessages(t, b)
	next := 0
	for i, types := range want {
		if first[i] != next {
			t.Fatalf("op %d (%s) starts at message %d, want %d", i, tx.Ops[i].Kind, first[i], next)
		}
		for _, typ := range types {
			if got := int(msgs[next].Header.Type & 0xff); got != typ {
				t.Errorf("message %d (op %d, %s) has type %d, want %d", next, i, tx.Ops[i].Kind, got, typ)
			}
			next++
		}
	}
	if len(msgs) != next {
		t.Errorf("%d messages, want %d", len(msgs), next)
	}
	for i, op := range tx.Ops {
		if op.Len() != 0 {
			t.Errorf("op %d (%s) still holds its %d elements after encoding: the transaction is held twice", i, op.Kind, op.Len())
		}
	}
	if udata := indexMapUserData(IPv4, idx); !bytes.Contains(msgs[2].Data, udata) || bytes.Contains(msgs[1].Data, udata) {
		t.Errorf("the typeof user data is not on the index map's NEWSET alone")
	}
}
