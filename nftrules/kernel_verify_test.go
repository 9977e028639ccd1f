package nftrules_test

import (
	"context"
	"testing"

	v1 "k8s.io/api/core/v1"

	"github.com/nftproxy/nftproxy/nftrules"
	"github.com/nftproxy/nftproxy/proxier/model"
)

// TestKernelVerifyFindsDrift: Verify, the periodic check that runs between
// syncs, agrees with a kernel that holds what was applied (also after a
// partial sync), and finds each kind of change made behind the
// reconciler's back: in a chain's rules, in a base chain, in a set's
// elements (removed or added), an extra chain, an extra set.
func TestKernelVerifyFindsDrift(t *testing.T) {
	tn := newTestNode(t, 3)
	web := svc(1, "web", v1.ProtocolTCP, 80, []string{"10.96.0.10"}, 8080, 0, 1, 2)
	st := &model.State{NodeName: "node", ClusterCIDRs: clusterCIDRs, Services: []*model.ServicePort{web}}
	rec := newReconciler(t, tn.node)
	ctx := context.Background()
	verify := func(want bool, what string) {
		t.Helper()
		if same, err := rec.Verify(ctx); err != nil || same != want {
			t.Fatalf("%s: Verify = %v, %v; want %v", what, same, err, want)
		}
	}
	if same, err := rec.Verify(ctx); err != nil || same {
		t.Fatalf("before any sync: Verify = %v, %v; want false (nothing applied)", same, err)
	}
	apply(t, rec, st, true)
	verify(true, "after the cold sync")
	web2 := svc(1, "web", v1.ProtocolTCP, 80, []string{"10.96.0.10"}, 8080, 0, 1)
	st2 := &model.State{NodeName: "node", ClusterCIDRs: clusterCIDRs, Services: []*model.ServicePort{web2}}
	apply(t, rec, st2, false)
	verify(true, "after a partial sync removing an endpoint")

	chain := nftrules.ServiceChainName(web.Name)
	epMap := nftrules.EndpointMapName(nftrules.TCP, 1)
	for _, drift := range [][]string{
		{"nft", "flush", "chain", "ip", "nftproxy", chain},
		{"nft", "add", "rule", "ip", "nftproxy", nftrules.ChainServices, "ip", "daddr", "10.96.0.10", "drop"},
		{"nft", "delete", "element", "ip", "nftproxy", epMap, "{ 16385 }"},
		{"nft", "add", "element", "ip", "nftproxy", epMap, "{ 16390 : 10.0.0.99 . 8080 }"},
		{"nft", "add", "chain", "ip", "nftproxy", "intruder"},
		{"nft", "add", "set", "ip", "nftproxy", "intruder", "{ type ipv4_addr; }"},
	} {
		if out, err := tn.node.Exec(drift...); err != nil {
			t.Fatalf("%v: %v\n%s", drift, err, out)
		}
		verify(false, drift[1]+" "+drift[len(drift)-2])
		apply(t, rec, st2, true) // the full sync repairs it
		verify(true, "after the repair of "+drift[1])
	}
}
