package nftfake_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nftproxy/nftproxy/nftrules/nft"
	"github.com/nftproxy/nftproxy/nftrules/nft/nftfake"
)

// The fake's state in nft syntax, as `nft list table ip nftproxy` shows
// base (elements and chains sorted).
const baseDump = `table ip nftproxy {
	set aff {
		type ipv4_addr
		size 65535
		flags dynamic,timeout
		timeout 1h
	}
	set cluster-ips {
		type ipv4_addr
		elements = { 10.96.0.1 }
	}
	map endpoints-tcp-0 {
		typeof numgen random mod 1 : ip daddr . tcp dport
		elements = { 0 : 10.1.0.1 . 8080 }
	}
	map service-ips {
		type ipv4_addr . inet_proto . inet_service : verdict
		elements = { 10.96.0.1 . tcp . 80 : goto svc-a }
	}
	chain nat-prerouting {
		type nat hook prerouting priority -100; policy accept;
		jump services
	}
	chain services {
		ip daddr . meta l4proto . th dport vmap @service-ips
	}
	chain svc-a {
		update @aff { ip saddr }
		meta l4proto tcp dnat ip to numgen random mod 1 map @endpoints-tcp-0
	}
}
`

func TestFakeSyncDumpsWhatItApplied(t *testing.T) {
	ctx := context.Background()
	f := nftfake.New()
	if f.Dump() != "" {
		t.Fatalf("a new fake has tables:\n%s", f.Dump())
	}
	res, err := f.Sync(ctx, base(t), false)
	if err != nil || !res.Full || res.Objects != 15 || res.Messages != 15 {
		// 1 table, 4 sets, 3 chains, 4 rules, 3 elements: one op each.
		t.Fatalf("first sync: %+v, %v; want a full one of 15 objects", res, err)
	}
	if got := f.Dump(); got != baseDump {
		t.Errorf("dump:\n%s\nwant\n%s", got, baseDump)
	}
	if err := f.Compare(base(t)); err != nil {
		t.Error(err)
	}
	// Nothing to do: no transaction, a partial sync.
	if res, err := f.Sync(ctx, base(t), false); err != nil || res.Full || res.Objects != 0 {
		t.Errorf("second sync: %+v, %v", res, err)
	}
	// The packet path's elements are the kernel's: a full sync leaves
	// them, and neither Compare nor Verify counts them.
	aff := &nft.Set{Name: affinity.Name}
	if err := f.Apply(&nft.Transaction{Ops: []nft.Op{setOp(nft.OpAddElements, aff, clusterIP)}}); err != nil {
		t.Fatal(err)
	}
	if res, err := f.Sync(ctx, base(t), true); err != nil || !res.Full || res.Objects != 0 {
		t.Errorf("full sync with an affinity entry: %+v, %v", res, err)
	}
	if res, err := f.Verify(ctx); res.Outcome != nft.VerifySame || err != nil {
		t.Errorf("Verify = %v, %v", res.Outcome, err)
	}
	if n := f.Ruleset().Tables[ip].Sets.Get(affinity.Name).Len(); n != 1 {
		t.Errorf("affinity entries: %d, want 1", n)
	}

	recs := f.Records()
	if len(recs) != 4 || recs[0].Tx == nil || recs[1].Tx != nil || recs[2].Desired != nil || !recs[3].Full {
		t.Errorf("records: %+v", recs)
	}
}

// TestFakeReadLiveIsWhatTheReconcilerReads: rules come back as their
// identity, dynamic sets empty, and Diff of that against what was synced
// is empty (the contract of a full sync).
func TestFakeReadLiveIsWhatTheReconcilerReads(t *testing.T) {
	f := synced(t)
	live, err := f.ReadLive()
	if err != nil {
		t.Fatal(err)
	}
	svc := live.Tables[ip].Chains.Get("svc-a")
	if o, ok := svc.Rules[1].Stmts[0].(nft.Opaque); !ok || len(svc.Rules[1].Stmts) != 1 || !strings.HasPrefix(o.Text, "meta l4proto tcp dnat") {
		t.Errorf("live rule: %#v", svc.Rules[1])
	}
	if tx := nft.Diff(live, base(t)); !tx.Empty() {
		t.Errorf("Diff(ReadLive, synced) has %d ops", len(tx.Ops))
	}
	skipped, _ := f.ReadLiveWithoutElements(serviceIPs.Name)
	if s := skipped.Tables[ip].Sets.Get(serviceIPs.Name); s == nil || s.Len() != 0 || !s.SameShape(serviceIPs) {
		t.Errorf("skipped set: %+v", s)
	}
	if skipped.Tables[ip].Sets.Get(endpoints.Name).Len() != 1 {
		t.Error("a set not skipped lost its elements")
	}
}

func TestFakeFailNextAndBeforeSync(t *testing.T) {
	ctx := context.Background()
	f := synced(t)
	want := base(t)
	changed := base(t)
	changed.Tables[ip].Sets.Get(clusterIPs.Name).Put(newClusterP)

	injected := errors.New("injected")
	f.FailNext(injected)
	if _, err := f.Sync(ctx, changed, false); !errors.Is(err, injected) {
		t.Fatalf("Sync after FailNext: %v", err)
	}
	if err := f.Compare(want); err != nil {
		t.Errorf("a failed sync changed the state: %v", err)
	}
	// After a failure the next sync reads the state, as the reconciler's.
	if res, err := f.Sync(ctx, changed, false); err != nil || !res.Full || res.Objects != 1 {
		t.Errorf("sync after the failure: %+v, %v; want a full one of 1 object", res, err)
	}

	held := errors.New("held")
	f.BeforeSync = func(context.Context) error { return held }
	if _, err := f.Sync(ctx, want, false); !errors.Is(err, held) {
		t.Errorf("BeforeSync's error: %v", err)
	}
	if err := f.Compare(changed); err != nil {
		t.Errorf("a sync failed by BeforeSync changed the state: %v", err)
	}
	f.BeforeSync = nil

	f.FailNext(injected)
	if err := f.Cleanup(); !errors.Is(err, injected) {
		t.Errorf("Cleanup after FailNext: %v", err)
	}
	if err := f.Cleanup(); err != nil || f.Dump() != "" {
		t.Errorf("Cleanup: %v, left\n%s", err, f.Dump())
	}
	if err := f.Cleanup(); err != nil {
		t.Errorf("Cleanup without tables: %v", err)
	}
}

// TestFakeRefusedSyncIsAtomic: a desired ruleset the kernel refuses (a
// rule naming a set nobody adds) changes nothing, and the next sync
// starts from the state.
func TestFakeRefusedSyncIsAtomic(t *testing.T) {
	ctx := context.Background()
	f := synced(t)
	bad := base(t)
	bad.Tables[ip].Sets.Get(clusterIPs.Name).Put(newClusterP)
	bad.Tables[ip].Chain("services").Add(nft.SetLookup{Fields: []nft.Field{nft.FieldSaddr}, Set: "missing"})
	res, err := f.Sync(ctx, bad, false)
	if err == nil || !strings.Contains(err.Error(), "no set missing") {
		t.Fatalf("sync of a rule naming a missing set: %v", err)
	}
	if res.Objects == 0 {
		t.Errorf("refused sync reports no objects: %+v", res)
	}
	if err := f.Compare(base(t)); err != nil {
		t.Errorf("refused sync changed the state: %v", err)
	}
	if res, err := f.Sync(ctx, base(t), false); err != nil || !res.Full || res.Objects != 0 {
		t.Errorf("sync after the refusal: %+v, %v", res, err)
	}
}

// TestFakeForeignChangeIsReportedAndRepaired: another process's change
// reaches the watchers and Verify; a full sync repairs it.
func TestFakeForeignChangeIsReportedAndRepaired(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := synced(t)
	var seen []nft.ForeignChange
	if err := f.WatchForeign(ctx, func(c nft.ForeignChange) { seen = append(seen, c) }); err != nil {
		t.Fatal(err)
	}
	del := &nft.Transaction{Ops: []nft.Op{setOp(nft.OpDelElements, serviceIPs, webElement)}}
	if err := f.Foreign(nft.ForeignChange{PortID: 99, PID: 4711, Command: "nft"}, del); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 1 || seen[0].Writer() != "nft[4711]" || seen[0].Objects != 1 {
		t.Errorf("watcher saw %+v", seen)
	}
	if res, err := f.Verify(ctx); res.Outcome != nft.VerifyDiffers || err != nil {
		t.Errorf("Verify after a foreign change = %v, %v", res.Outcome, err)
	}
	// A refused foreign transaction is no change.
	if err := f.Foreign(nft.ForeignChange{}, del); err == nil || len(seen) != 1 {
		t.Errorf("second delete of the element: %v, %d notifications", err, len(seen))
	}
	if res, err := f.Sync(ctx, base(t), true); err != nil || res.Objects != 1 {
		t.Errorf("repair: %+v, %v", res, err)
	}
	if res, _ := f.Verify(ctx); res.Outcome != nft.VerifySame {
		t.Errorf("Verify after the repair = %v", res.Outcome)
	}
	// After ctx ends the watcher is dropped (asynchronously: poll).
	cancel()
	again := &nft.Transaction{Ops: []nft.Op{setOp(nft.OpAddElements, clusterIPs, clusterIP)}} // accepted, changes nothing
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		n := len(seen)
		if err := f.Foreign(nft.ForeignChange{}, again); err != nil {
			t.Fatal(err)
		}
		if len(seen) == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the watcher is still told 5 s after its context ended")
		}
	}
}
