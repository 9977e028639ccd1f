package nftrules_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	v1 "k8s.io/api/core/v1"

	"github.com/nftproxy/nftproxy/nftrules"
	"github.com/nftproxy/nftproxy/nftrules/nft"
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
	verify := func(want nft.VerifyOutcome, what string) {
		t.Helper()
		if res, err := rec.Verify(ctx); err != nil || res.Outcome != want {
			t.Fatalf("%s: Verify = %+v, %v; want %v", what, res, err, want)
		}
	}
	verify(nft.VerifyDiffers, "before any sync (nothing applied)")
	apply(t, rec, st, true)
	verify(nft.VerifySame, "after the cold sync")
	web2 := svc(1, "web", v1.ProtocolTCP, 80, []string{"10.96.0.10"}, 8080, 0, 1)
	st2 := &model.State{NodeName: "node", ClusterCIDRs: clusterCIDRs, Services: []*model.ServicePort{web2}}
	apply(t, rec, st2, false)
	verify(nft.VerifySame, "after a partial sync removing an endpoint")

	for _, drift := range drifts(web) {
		if out, err := tn.node.Exec(drift...); err != nil {
			t.Fatalf("%v: %v\n%s", drift, err, out)
		}
		verify(nft.VerifyDiffers, drift[1]+" "+drift[len(drift)-2])
		apply(t, rec, st2, true) // the full sync repairs it
		verify(nft.VerifySame, "after the repair of "+drift[1])
	}
}

// drifts are nft commands that change our tables behind the reconciler's
// back, each of another kind: a chain's rules, a base chain, a set's
// elements (removed or added), an extra chain, an extra set. web is a
// Service with ID 1 and its first endpoint.
func drifts(web *model.ServicePort) [][]string {
	chain := nftrules.ServiceChainName(web.Name)
	epMap := nftrules.EndpointMapName(nft.TCP, 1)
	return [][]string{
		{"nft", "flush", "chain", "ip", "nftproxy", chain},
		{"nft", "add", "rule", "ip", "nftproxy", nftrules.ChainServices, "ip", "daddr", "10.96.0.10", "drop"},
		{"nft", "delete", "element", "ip", "nftproxy", epMap, "{ 16385 }"},
		{"nft", "add", "element", "ip", "nftproxy", epMap, "{ 16390 : 10.0.0.99 . 8080 }"},
		{"nft", "add", "chain", "ip", "nftproxy", "intruder"},
		{"nft", "add", "set", "ip", "nftproxy", "intruder", "{ type ipv4_addr; }"},
	}
}

// TestKernelVerifyBesideSyncs: checks running while a Builder derives
// rulesets and partial syncs commit them (endpoints and Services coming
// and going) always agree with the kernel: each step compares what it read
// with what was applied when it read. Run with -race, it also proves that
// the comparisons read nothing the Builder writes.
func TestKernelVerifyBesideSyncs(t *testing.T) {
	tn := newTestNode(t, 3)
	rec := newReconciler(t, tn.node)
	b := nftrules.NewBuilder()
	state := func(i int) *model.State {
		sps := []*model.ServicePort{svc(1, "web", v1.ProtocolTCP, 80, []string{"10.96.0.10"}, 8080, 0, 1+i%2)}
		for j := range i % 5 {
			sps = append(sps, svc(uint32(2+j), fmt.Sprintf("s%d", j), v1.ProtocolTCP, 80, []string{fmt.Sprintf("10.96.1.%d", j+1)}, 8080, j%3))
		}
		return &model.State{NodeName: "node", ClusterCIDRs: clusterCIDRs, Services: sps}
	}
	ctx := context.Background()
	if _, err := rec.Sync(ctx, b.Build(state(0)), true); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	checks := make(chan error, 1)
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				if n == 0 {
					checks <- errors.New("no check ran")
				} else {
					checks <- nil
				}
				return
			default:
			}
			if res, err := rec.Verify(ctx); err != nil || res.Outcome != nft.VerifySame {
				checks <- fmt.Errorf("check %d beside the syncs: %+v, %v", n, res, err)
				return
			}
			n++
		}
	}()
	for i := 1; i <= 200; i++ {
		if _, err := rec.Sync(ctx, b.Build(state(i)), false); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	if err := <-checks; err != nil {
		t.Fatal(err)
	}
}
