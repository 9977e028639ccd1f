package nft

import (
	"errors"
	"strings"
	"syscall"
	"testing"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"

	"github.com/nftproxy/nftproxy/e2e/netkit"
)

// TestKernelSendBatch: a batch that the kernel accepts is committed and
// acknowledged; a batch with one bad message is refused as a whole, the
// error names the op of that message, and the batch socket carries the
// next batch cleanly (no answer of the refused one is left unread).
func TestKernelSendBatch(t *testing.T) {
	ns := netkit.NewTestNS(t, "nftk-batch-a")
	r := &Reconciler{opts: Options{NetNSFd: ns.FD()}}
	defer r.Close()
	c, err := r.conn()
	if err != nil {
		t.Fatal(err)
	}
	sock, err := r.batchConn()
	if err != nil {
		t.Fatal(err)
	}

	good := &Chain{Name: "good"}
	tx := &Transaction{Ops: []Op{{Kind: OpAddTable, Family: IPv4}, {Kind: OpAddChain, Family: IPv4, Chain: good}}}
	for i := 0; i < 3000; i++ { // enough messages that per-message ACKs would have queued thousands
		tx.Ops = append(tx.Ops, Op{Kind: OpAddRule, Family: IPv4, Chain: good, Rule: &Rule{Stmts: []Stmt{ReturnStmt}}})
	}
	msgs, _, err := encodeTx(tx)
	if err != nil || msgs.messages() != len(tx.Ops) {
		t.Fatalf("good batch: %d messages, %v", msgs.messages(), err)
	}
	answers := &answerCounter{}
	if err := sendBatch(sock, msgs, answers.wrap, func(int) string { return "" }); err != nil {
		t.Fatalf("good batch: %v", err)
	}
	// Only the ACK comes back: no echo of each rule (NLM_F_ECHO), which
	// the kernel would build and queue at commit for nothing.
	if answers.acks != 1 || answers.other != 0 {
		t.Fatalf("good batch of %d messages: %d ACKs and %d other answers, want 1 ACK only", len(tx.Ops), answers.acks, answers.other)
	}
	if chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyIPv4); err != nil || len(chains) != 1 {
		t.Fatalf("after the good batch: chains %v, %v", chains, err)
	}

	// A rule for a chain that exists nowhere, between valid ops.
	bad := &Transaction{Ops: []Op{
		{Kind: OpAddChain, Family: IPv4, Chain: &Chain{Name: "new"}},
		{Kind: OpAddRule, Family: IPv4, Chain: &Chain{Name: "missing"}, Rule: &Rule{Stmts: []Stmt{ReturnStmt}}},
		{Kind: OpAddRule, Family: IPv4, Chain: good, Rule: &Rule{Stmts: []Stmt{ReturnStmt}}},
	}}
	msgs, first, err := encodeTx(bad)
	if err != nil {
		t.Fatal(err)
	}
	err = sendBatch(sock, msgs, nil, func(msg int) string {
		for i := len(first) - 1; i >= 0; i-- {
			if first[i] <= msg {
				return "op " + bad.Ops[i].Chain.Name
			}
		}
		return "?"
	})
	if !errors.Is(err, unix.ENOENT) || !strings.Contains(err.Error(), "op missing") {
		t.Fatalf("bad batch: got %v, want ENOENT naming the op of chain missing", err)
	}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil || len(chains) != 1 || chains[0].Name != "good" {
		t.Fatalf("after the refused batch: chains %v, %v; want only good (nothing of the batch committed)", chains, err)
	}
	rules, err := c.GetRules(nlTable(IPv4), nlChain(IPv4, good))
	if err != nil || len(rules) != 3000 {
		t.Fatalf("rules of good: %d, %v", len(rules), err)
	}
	next := &Transaction{Ops: []Op{{Kind: OpAddChain, Family: IPv4, Chain: &Chain{Name: "next"}}}}
	if msgs, _, err = encodeTx(next); err != nil {
		t.Fatal(err)
	}
	if err := sendBatch(sock, msgs, nil, func(int) string { return "next" }); err != nil {
		t.Fatalf("the batch after the refused one: %v", err)
	}
	if chains, err = c.ListChainsOfTableFamily(nftables.TableFamilyIPv4); err != nil || len(chains) != 2 {
		t.Fatalf("after the next batch: chains %v, %v; want good and next", chains, err)
	}
}

// answerCounter wraps a batch socket (Options.WrapBatchIO's seam) and
// counts the answers read back: ACKs and errors (NLMSG_ERROR) and anything
// else.
type answerCounter struct {
	BatchIO
	acks, other int
}

func (a *answerCounter) wrap(io BatchIO) BatchIO { a.BatchIO = io; return a }

func (a *answerCounter) Recv(buf []byte) (int, error) {
	n, err := a.BatchIO.Recv(buf)
	if err != nil {
		return n, err
	}
	msgs, perr := syscall.ParseNetlinkMessage(buf[:n])
	if perr != nil {
		return n, perr
	}
	for _, m := range msgs {
		if m.Header.Type == unix.NLMSG_ERROR {
			a.acks++
		} else {
			a.other++
		}
	}
	return n, nil
}
