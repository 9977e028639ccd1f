package nftrules_test

import (
	"context"
	"testing"

	v1 "k8s.io/api/core/v1"

	"github.com/nftproxy/nftproxy/nftrules"
	"github.com/nftproxy/nftproxy/nftrules/nft"
	"github.com/nftproxy/nftproxy/proxier/model"
)

// TestKernelVerifyFindsDriftUnderChurn: drift is found even when every
// read the check makes without the lock is interrupted by one of our own
// partial syncs (an endpoint of another Service flipping its readiness,
// which changes that Service's DNAT rule and its endpoint elements) — the
// sustained churn of 50,000 Services, made deterministic by the test seam.
// The check used to give up after two such reads and report "same"
// having compared nothing; now it re-reads what differs under the lock.
// Each kind of drift is found in one check (the element drift in the set
// the churn changes every time), and an undrifted kernel is reported the
// same (no false alarm) after objects were re-read. (A foreign rule in the
// flipping Service's chain needs no check: each flip flushes and rewrites
// that chain.)
func TestKernelVerifyFindsDriftUnderChurn(t *testing.T) {
	tn := newTestNode(t, 3)
	web := svc(1, "web", v1.ProtocolTCP, 80, []string{"10.96.0.10"}, 8080, 0, 1)
	state := func(flips int) *model.State {
		pods := []int{2}
		if flips%2 == 1 {
			pods = []int{1, 2}
		}
		flap := svc(2, "flap", v1.ProtocolTCP, 80, []string{"10.96.0.20"}, 8080, pods...)
		return &model.State{NodeName: "node", ClusterCIDRs: clusterCIDRs, Services: []*model.ServicePort{web, flap}}
	}
	ctx := context.Background()
	var rec *nft.Reconciler
	churn, flips := false, 0
	rec = nftrules.NewReconciler(nft.Options{NetNSFd: tn.node.FD(), AfterVerifyRead: func() {
		if !churn {
			return
		}
		flips++
		if _, err := rec.Sync(ctx, nftrules.Build(state(flips)), false); err != nil {
			t.Errorf("partial sync during the check: %v", err)
		}
	}})
	check := func(want nft.VerifyOutcome, what string) {
		t.Helper()
		churn = true
		before := flips
		res, err := rec.Verify(ctx)
		churn = false
		if flips-before < 2 {
			t.Fatalf("%s: only %d syncs interleaved with the check's reads", what, flips-before)
		}
		if err != nil || res.Outcome != want {
			t.Fatalf("%s: Verify under churn = %+v, %v; want %v", what, res, err, want)
		}
		if res.Outcome == nft.VerifySame && res.Confirmed == 0 {
			t.Fatalf("%s: Verify = %+v: the churned objects were not re-read under the lock", what, res)
		}
	}
	repair := func() {
		t.Helper()
		if _, err := rec.Sync(ctx, nftrules.Build(state(flips)), true); err != nil {
			t.Fatal(err)
		}
	}
	repair()
	check(nft.VerifySame, "after the cold sync")

	for _, drift := range drifts(web) {
		if out, err := tn.node.Exec(drift...); err != nil {
			t.Fatalf("%v: %v\n%s", drift, err, out)
		}
		check(nft.VerifyDiffers, "after "+drift[1]+" "+drift[len(drift)-2])
		repair()
		check(nft.VerifySame, "after the repair of "+drift[1]+" "+drift[len(drift)-2])
	}
}
