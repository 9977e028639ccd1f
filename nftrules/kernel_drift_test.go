package nftrules_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"

	"github.com/nftproxy/nftproxy/nftrules"
	"github.com/nftproxy/nftproxy/nftrules/nft"
	"github.com/nftproxy/nftproxy/proxier/model"
)

// TestKernelFullSyncRepairsDrift edits our tables behind the reconciler's
// back with nft (as an admin or another tool might) and checks that a
// partial sync does not notice — the last applied state stands in for the
// kernel — while the periodic full sync reads the kernel and repairs all
// of it, after which real traffic flows again.
func TestKernelFullSyncRepairsDrift(t *testing.T) {
	tn := newTestNode(t, 3)
	tn.routed.ServeEcho(8080)
	web := svc(1, "web", v1.ProtocolTCP, 80, []string{"10.96.0.10"}, 8080, 0, 1, 2)
	st := &model.State{NodeName: "node", ClusterCIDRs: clusterCIDRs, Services: []*model.ServicePort{web}}
	rec := newReconciler(t, tn.node)
	b := nftrules.NewBuilder()
	apply(t, rec, st, true)
	vip := netip.MustParseAddrPort("10.96.0.10:80")
	if backends, _ := who(t, tn.client, "tcp", vip, 3); len(backends) != 3 {
		t.Fatalf("before the drift: reached %v", backends)
	}

	chain := nftrules.ServiceChainName(web.Name)
	for _, cmd := range [][]string{
		{"nft", "flush", "chain", "ip", "nftproxy", chain},
		{"nft", "delete", "element", "ip", "nftproxy", nftrules.EndpointMapName(nft.TCP, 1), "{ 16385 }"},
		{"nft", "add", "rule", "ip", "nftproxy", nftrules.ChainServices, "ip", "daddr", "10.96.0.10", "drop"},
	} {
		if out, err := tn.node.Exec(cmd...); err != nil {
			t.Fatalf("%v: %v\n%s", cmd, err, out)
		}
	}
	if _, err := tn.client.DialTCP(vip, 500*time.Millisecond); err == nil {
		t.Fatal("the drift did not break the Service: the test proves nothing")
	}

	desired := b.Build(st)
	res, err := rec.Sync(context.Background(), desired, false)
	if err != nil || res.Objects != 0 {
		t.Fatalf("partial sync: %d objects, %v; want 0 (it trusts the last applied state)", res.Objects, err)
	}
	res, err = rec.Sync(context.Background(), desired, true)
	if err != nil {
		t.Fatal(err)
	}
	if res.Objects == 0 {
		t.Fatal("the full sync found nothing to repair")
	}
	if res, err := rec.Sync(context.Background(), desired, true); err != nil || res.Objects != 0 {
		t.Fatalf("second full sync: %d objects, %v; want 0", res.Objects, err)
	}
	if backends, _ := who(t, tn.client, "tcp", vip, 3); len(backends) != 3 {
		t.Errorf("after the repair: reached %v, want all three", backends)
	}
}
