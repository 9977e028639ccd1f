package nft

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"

	"github.com/nftproxy/nftproxy/e2e/netkit"
)

// TestKernelSendBatch: a batch that the kernel accepts is committed and
// acknowledged; a batch with one bad message is refused as a whole, the
// error names the op of that message, and the connection answers the next
// question cleanly (no answer of the batch is left unread).
func TestKernelSendBatch(t *testing.T) {
	netkit.RequireRoot(t)
	_ = netkit.CleanupPrefix("nftk-batch-")
	ns, err := netkit.New("nftk-batch-a")
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Delete()
	c, err := nftables.New(nftables.AsLasting(), nftables.WithNetNSFd(ns.FD()), nftables.WithSockOptions(forceBuffers))
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseLasting()

	good := &Chain{Name: "good"}
	tx := &Transaction{Ops: []Op{{Kind: OpAddTable, Family: IPv4}, {Kind: OpAddChain, Family: IPv4, Chain: good}}}
	for i := 0; i < 3000; i++ { // enough messages that per-message ACKs would have queued thousands
		tx.Ops = append(tx.Ops, Op{Kind: OpAddRule, Family: IPv4, Chain: good, Rule: &Rule{Stmts: []Stmt{ReturnStmt}}})
	}
	first, err := queueTx(c, tx)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := sendBatch(c, nil, func(int) string { return "" }); err != nil || n != len(tx.Ops) {
		t.Fatalf("good batch: %d messages, %v", n, err)
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
	if first, err = queueTx(c, bad); err != nil {
		t.Fatal(err)
	}
	_, err = sendBatch(c, nil, func(msg int) string {
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
}
