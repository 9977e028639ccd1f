package nftrules_test

import (
	"context"
	"fmt"
	"net/netip"
	"testing"

	"github.com/nftproxy/nftproxy/nftrules"
	"github.com/nftproxy/nftproxy/nftrules/nft"
	"github.com/nftproxy/nftproxy/proxier/model"
)

// TestKernelLongRuleReadsBackAsText: a rule whose text is longer than the
// kernel keeps in a rule's user data (here the masquerade rule of a state
// with five IPv6 cluster CIDRs) reads back from the kernel as its full
// text, which parses (what --dump and --trace do), and a full sync finds
// nothing to change. Before, only a hash was stored: the rule could not be
// parsed back.
func TestKernelLongRuleReadsBackAsText(t *testing.T) {
	tn := newTestNode(t, 0)
	st := &model.State{NodeName: "node"}
	for i := range 5 {
		st.ClusterCIDRs = append(st.ClusterCIDRs, netip.MustParsePrefix(fmt.Sprintf("fd%02x:3f1b:77a0:c4e2:%x:9b3d:51c8:e%03x/128", i, 0x1000+i*0x1357, i*0x2a1)))
	}
	built := nftrules.Build(st)
	want := built.Tables[nft.IPv6].Chains.Get(nftrules.ChainServices).Rules[0].Render(nft.IPv6)
	if len(want) <= 256 {
		t.Fatalf("the masquerade rule is only %d bytes: the test proves nothing", len(want))
	}
	rec := newReconciler(t, tn.node)
	apply(t, rec, st, true)
	live, err := rec.ReadLive()
	if err != nil {
		t.Fatal(err)
	}
	if got := live.Tables[nft.IPv6].Chains.Get(nftrules.ChainServices).Rules[0].Render(nft.IPv6); got != want {
		t.Errorf("read back %q\nwant %q", got, want)
	}
	if _, err := nft.ParseRuleset(live); err != nil {
		t.Errorf("live ruleset does not parse: %v", err)
	}
	if res, err := rec.Sync(context.Background(), built, true); err != nil || res.Objects != 0 {
		t.Errorf("full sync after apply: %d objects, %v; want 0", res.Objects, err)
	}
}
