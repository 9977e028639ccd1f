package nftrules_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"

	"github.com/nftproxy/nftproxy/nftrules"
	"github.com/nftproxy/nftproxy/nftrules/nft"
	"github.com/nftproxy/nftproxy/proxier/model"
)

// TestKernelWatchForeign checks what the watcher reports: nothing for the
// reconciler's own transactions or for other tables, one change (naming
// the writer) per foreign transaction that touches our tables, and nothing
// for affinity sets, whose elements belong to the packet path.
func TestKernelWatchForeign(t *testing.T) {
	tn := newTestNode(t, 0)
	rec := newReconciler(t, tn.node)
	web := svc(1, "web", v1.ProtocolTCP, 80, []string{"10.96.0.10", "fd96::10"}, 8080, 0)
	sticky := svc(2, "sticky", v1.ProtocolTCP, 80, []string{"10.96.0.11"}, 8080, 0)
	sticky.SessionAffinityClientIP, sticky.AffinityTimeoutSeconds = true, 60
	st := &model.State{NodeName: "node", ClusterCIDRs: clusterCIDRs, Services: []*model.ServicePort{web, sticky}}

	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	changes := make(chan nft.ForeignChange, 100)
	if err := rec.WatchForeign(ctx, func(c nft.ForeignChange) { changes <- c }); err != nil {
		t.Fatal(err)
	}
	// expect waits for n changes, then makes sure no other follows.
	expect := func(what string, n int) []nft.ForeignChange {
		t.Helper()
		var got []nft.ForeignChange
		deadline := time.After(time.Second)
		for len(got) < n {
			select {
			case c := <-changes:
				got = append(got, c)
			case <-deadline:
				t.Fatalf("%s: %d foreign changes reported, want %d", what, len(got), n)
			}
		}
		select {
		case c := <-changes:
			t.Fatalf("%s: unexpected foreign change %+v (after %+v)", what, c, got)
		case <-time.After(200 * time.Millisecond):
		}
		return got
	}
	nft := func(args ...string) {
		t.Helper()
		if out, err := tn.node.Exec(append([]string{"nft"}, args...)...); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
	}

	apply(t, rec, st, true)
	web.Endpoints = web.Endpoints[:1]
	apply(t, rec, st, false)
	expect("our own transactions", 0)

	nft("add table ip other; add chain ip other c; add table inet nftproxy; add chain inet nftproxy c")
	nft("delete table ip other; delete table inet nftproxy")
	expect("other tables (also one called nftproxy in family inet)", 0)

	aff := nftrules.AffinitySetName(sticky.Name, sticky.Endpoints[0].AddrPort(), 60*time.Second)
	nft("add element ip nftproxy " + aff + " { 192.168.50.2 }")
	expect("an affinity set element", 0)

	nft("delete element ip nftproxy " + nftrules.SetClusterIPs + " { 10.96.0.10 }")
	got := expect("a deleted element", 1)
	if c := got[0]; c.Command != "nft" || c.PID == 0 || c.PortID == 0 || c.Objects != 1 || c.Lost || c.Writer() != fmt.Sprintf("nft[%d]", c.PID) {
		t.Errorf("deleted element: %+v (writer %s)", c, c.Writer())
	}

	nft("flush ruleset")
	got = expect("nft flush ruleset", 1)
	t.Logf("nft flush ruleset: %+v, writer %s", got[0], got[0].Writer())
	if got[0].Objects < 10 {
		t.Errorf("flush ruleset: %+v, want every object of both tables", got[0])
	}

	apply(t, rec, st, true) // our repair: not reported
	expect("our repair", 0)
}

// TestKernelWatchForeignDuringLargeBatch: while a large batch of ours is
// sent, the watcher is out of the nftables group (so that the kernel does
// not build a notification of every one of our objects for it). Our own
// large batch is still not reported; a foreign transaction committed
// meanwhile, which the watcher cannot see, is reported as Lost (the
// generation moved by more than our batch), so that it gets repaired.
func TestKernelWatchForeignDuringLargeBatch(t *testing.T) {
	tn := newTestNode(t, 0)
	var foreignFirst, failSend atomic.Bool
	rec := nftrules.NewReconciler(nft.Options{NetNSFd: tn.node.FD(), WrapBatchIO: func(io nft.BatchIO) nft.BatchIO {
		return sendHook{io, func() error {
			if foreignFirst.Swap(false) {
				if out, err := tn.node.Exec("nft", "add chain ip nftproxy foreign"); err != nil {
					t.Errorf("foreign nft: %v\n%s", err, out)
				}
			}
			if failSend.Swap(false) {
				return errors.New("injected: not sent")
			}
			return nil
		}}
	}})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	changes := make(chan nft.ForeignChange, 100)
	if err := rec.WatchForeign(ctx, func(c nft.ForeignChange) { changes <- c }); err != nil {
		t.Fatal(err)
	}
	reported := func() []nft.ForeignChange {
		var got []nft.ForeignChange
		for {
			select {
			case c := <-changes:
				got = append(got, c)
			case <-time.After(500 * time.Millisecond):
				return got
			}
		}
	}
	st := scaleState(600, 10) // ~8,000 objects: a large batch, both ways
	small := *st
	small.Services = st.Services[:1]
	apply(t, rec, &small, true)
	if res := apply(t, rec, st, false); res.Objects < 3000 {
		t.Fatalf("the large batch has %d objects", res.Objects)
	}
	if got := reported(); len(got) != 0 {
		t.Fatalf("our own large batch was reported: %+v", got)
	}

	failSend.Store(true) // a large batch that never reaches the kernel
	if _, err := rec.Sync(context.Background(), nftrules.Build(&small), false); err == nil {
		t.Fatal("the injected send failure was not reported")
	}
	if got := reported(); len(got) != 0 {
		t.Fatalf("our failed large batch was reported: %+v", got)
	}
	apply(t, rec, st, false) // after the failure: a full sync, nothing to change

	foreignFirst.Store(true) // an nft transaction just before our batch
	apply(t, rec, &small, false)
	if got := reported(); len(got) != 1 || !got[0].Lost {
		t.Fatalf("foreign transaction during our large batch: reported %+v, want one Lost", got)
	}
}

// sendHook calls before ahead of every batch; an error from it is the
// send's, and the batch is not sent.
type sendHook struct {
	nft.BatchIO
	before func() error
}

func (h sendHook) Send(batch [][]byte) error {
	if err := h.before(); err != nil {
		return err
	}
	return h.BatchIO.Send(batch)
}
