package nft

import (
	"context"
	"testing"

	"github.com/nftproxy/nftproxy/e2e/netkit"
)

// noSets is the layout of rulesets without sets.
type noSets struct{}

func (noSets) Set(Family, string) (*Set, bool) { return nil, false }
func (noSets) PacketPathSet(string) bool       { return false }

// Once a derived ruleset is applied, its parent and delta, which only
// Diff(parent, rs) reads, are dropped (a cold Build's delta names every
// service port); the ruleset derived from it next is still diffed by its
// own delta.
func TestKernelSyncSettlesTheAppliedRuleset(t *testing.T) {
	ns := netkit.NewTestNS(t, "nftk-settle")
	r := NewReconciler(noSets{}, Options{NetNSFd: ns.FD()})
	defer r.Close()
	ctx := context.Background()
	base := NewRuleset()
	base.Table(IPv4).Chain("a").Add(ReturnStmt)
	if _, err := r.Sync(ctx, base, true); err != nil {
		t.Fatal(err)
	}
	d := base.Derive()
	d.PutChain(IPv4, &Chain{Name: "b", Rules: []Rule{{Stmts: []Stmt{ReturnStmt}}}})
	rs := d.Ruleset()
	if rs.parent != base || rs.delta == nil {
		t.Fatal("a derived ruleset without its parent or delta")
	}
	if res, err := r.Sync(ctx, rs, false); err != nil || res.Objects == 0 {
		t.Fatalf("adding a chain: %+v, %v", res, err)
	}
	if rs.parent != nil || rs.delta != nil {
		t.Fatal("the applied ruleset keeps its parent or delta")
	}
	d = rs.Derive()
	d.DeleteChain(IPv4, "b")
	next := d.Ruleset()
	if next.parent != rs || next.delta == nil {
		t.Fatal("the next derived ruleset without its parent or delta")
	}
	if res, err := r.Sync(ctx, next, false); err != nil || res.Full || res.Objects == 0 {
		t.Fatalf("deleting a chain: %+v, %v", res, err)
	}
	if live, err := r.ReadLive(); err != nil || !Diff(live, next).Empty() {
		t.Fatalf("the kernel does not hold the last ruleset (%v)", err)
	}
}
