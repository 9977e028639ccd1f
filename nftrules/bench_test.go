package nftrules_test

import (
	"context"
	"net/netip"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/nftproxy/nftproxy/nftrules"
	"github.com/nftproxy/nftproxy/nftrules/internal/fixture"
	"github.com/nftproxy/nftproxy/nftrules/nft"
	"github.com/nftproxy/nftproxy/nftrules/nft/nftfake"
	"github.com/nftproxy/nftproxy/proxier/model"
)

// scaleState is fixture.ScaleState on the kernel tests' cluster CIDRs,
// numbered as the proxier numbers its States (model.Delta).
func scaleState(n, eps int) *model.State {
	st := fixture.ScaleState(n, eps, clusterCIDRs)
	st.Gen = 1
	return st
}

// changeOneEndpoint moves one endpoint of Service i to a new address. Like
// the proxier, it replaces the ServicePort value instead of editing it,
// and names the changed Service in the next State's Delta.
func changeOneEndpoint(st *model.State, i, round int) {
	sp := *st.Services[i]
	sp.Endpoints = append([]model.Endpoint(nil), sp.Endpoints...)
	sp.Endpoints[0].Addr = netip.AddrFrom4([4]byte{10, 250, byte(round >> 8), byte(round)})
	st.Services[i] = &sp
	st.Delta = &model.Delta{Since: st.Gen, Changed: []types.NamespacedName{sp.Name.NamespacedName}}
	st.Gen++
}

func BenchmarkBuild10kx10(b *testing.B) {
	st := scaleState(10000, 10)
	b.ReportAllocs()
	for b.Loop() {
		nftrules.Build(st)
	}
}

// BenchmarkBuildDiffOneEndpointChange* is our side of one endpoint change
// (Build and Diff, no kernel) at 1k, 10k and 50k Services: issue 11 wants
// it independent of the number of Services.
func BenchmarkBuildDiffOneEndpointChange1kx10(b *testing.B) { benchBuildDiffOneEndpointChange(b, 1000) }
func BenchmarkBuildDiffOneEndpointChange10kx10(b *testing.B) {
	benchBuildDiffOneEndpointChange(b, 10000)
}
func BenchmarkBuildDiffOneEndpointChange50kx10(b *testing.B) {
	benchBuildDiffOneEndpointChange(b, 50000)
}

func benchBuildDiffOneEndpointChange(b *testing.B, n int) {
	benchBuildDiffChange(b, n, changeOneEndpoint, 0, 8)
}

// benchBuildDiffChange builds and diffs one change of Service n/2 per
// round; the transaction must hold between least and most objects.
func benchBuildDiffChange(b *testing.B, n int, change func(st *model.State, i, round int), least, most int) {
	st := scaleState(n, 10)
	builder := nftrules.NewBuilder()
	live := builder.Build(st)
	b.ReportAllocs()
	round := 0
	for b.Loop() {
		round++
		change(st, n/2, round)
		desired := builder.Build(st)
		if objects := nft.Diff(live, desired).Objects(); objects < least || objects > most {
			b.Fatalf("change %d: %d objects, want %d to %d", round, objects, least, most)
		}
		live = desired
	}
}

// BenchmarkBuildDiffEndpointCountChange* is our side of a change that
// rewrites a Service's chain (its endpoint count, the numgen modulus of
// the chain's rule, goes from 10 to 11 and back), Build and Diff without
// the kernel, at 1k and 50k Services.
func BenchmarkBuildDiffEndpointCountChange1kx10(b *testing.B) {
	benchBuildDiffEndpointCountChange(b, 1000)
}
func BenchmarkBuildDiffEndpointCountChange50kx10(b *testing.B) {
	benchBuildDiffEndpointCountChange(b, 50000)
}

func benchBuildDiffEndpointCountChange(b *testing.B, n int) {
	benchBuildDiffChange(b, n, changeEndpointCount, 1, 40)
}

// changeEndpointCount gives Service i an eleventh endpoint on odd rounds
// and takes it away on even ones, the way changeOneEndpoint changes it.
func changeEndpointCount(st *model.State, i, round int) {
	sp := *st.Services[i]
	sp.Endpoints = append([]model.Endpoint(nil), sp.Endpoints[:10]...)
	if round%2 == 1 {
		extra := sp.Endpoints[0]
		extra.Addr = netip.AddrFrom4([4]byte{10, 251, byte(round >> 8), byte(round)})
		sp.Endpoints = append(sp.Endpoints, extra)
	}
	st.Services[i] = &sp
	st.Delta = &model.Delta{Since: st.Gen, Changed: []types.NamespacedName{sp.Name.NamespacedName}}
	st.Gen++
}

// BenchmarkFakeColdSync1kx10 is what the fake kernel (nftfake) costs the
// tests that use it: a first Sync of 1k Services x 10 endpoints, Build
// excluded.
func BenchmarkFakeColdSync1kx10(b *testing.B) {
	built := nftrules.Build(scaleState(1000, 10))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := nftfake.New().Sync(context.Background(), built, false); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFakeSyncOneEndpointChange10kx10: a partial Sync of a changed
// endpoint into a fake holding 10k Services x 10 endpoints, Build
// included (as in BenchmarkBuildDiffOneEndpointChange10kx10).
func BenchmarkFakeSyncOneEndpointChange10kx10(b *testing.B) {
	ctx := context.Background()
	st := scaleState(10000, 10)
	builder := nftrules.NewBuilder()
	kernel := nftfake.New()
	if _, err := kernel.Sync(ctx, builder.Build(st), false); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	round := 0
	for b.Loop() {
		round++
		changeOneEndpoint(st, 5000, round)
		if res, err := kernel.Sync(ctx, builder.Build(st), false); err != nil || res.Objects > 8 {
			b.Fatalf("one endpoint change: %+v, %v", res, err)
		}
	}
}

// BenchmarkKernelColdApply10kx10 programs 10k Services x 10 endpoints into an
// empty namespace: one transaction, measured from Build to committed.
func BenchmarkKernelColdApply10kx10(b *testing.B) { benchColdApply(b, 10000, false) }

// BenchmarkKernelColdApply50kx10 is the same at 50,000 Services (issue 11:
// cold sync toward 4 s).
func BenchmarkKernelColdApply50kx10(b *testing.B) { benchColdApply(b, 50000, false) }

// BenchmarkKernelColdApplyWatched* is the same with WatchForeign
// subscribed, as in the proxy (the watcher leaves the nftables group while
// the batch is sent: nft/mute.go). foreign/op counts what the watcher reported (it should be
// 0: the batch is ours; 1 if the notifications overran its socket).
func BenchmarkKernelColdApplyWatched10kx10(b *testing.B) { benchColdApply(b, 10000, true) }
func BenchmarkKernelColdApplyWatched50kx10(b *testing.B) { benchColdApply(b, 50000, true) }

func benchColdApply(b *testing.B, n int, watch bool) {
	st := scaleState(n, 10)
	var foreign atomic.Int64
	// The split of each op's time (ms/op): what of a cold sync is ours and
	// what is the kernel's (send: the kernel validates and commits inside
	// sendmsg).
	var build time.Duration
	var steps nft.SyncTiming
	var user, sys time.Duration
	for b.Loop() {
		b.StopTimer()
		tn := newTestNode(b, 0)
		rec := newReconciler(b, tn.node)
		ctx, cancel := context.WithCancel(context.Background())
		if watch {
			if err := rec.WatchForeign(ctx, func(nft.ForeignChange) { foreign.Add(1) }); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		before := cpuTimes(b)
		began := time.Now()
		rs := nftrules.Build(st)
		build += time.Since(began)
		res, err := rec.Sync(context.Background(), rs, true)
		if err != nil {
			b.Fatal(err)
		}
		after := cpuTimes(b)
		b.StopTimer()
		steps.Read += res.Timing.Read
		steps.Diff += res.Timing.Diff
		steps.Encode += res.Timing.Encode
		steps.Send += res.Timing.Send
		user += after.user - before.user
		sys += after.sys - before.sys
		b.ReportMetric(float64(res.Objects), "objects/op")
		b.ReportMetric(float64(res.Messages), "messages/op")
		time.Sleep(time.Second) // let the watcher read every notification
		cancel()
		_ = tn.node.Delete()
		_ = tn.client.Delete()
		b.StartTimer()
	}
	b.ReportMetric(float64(foreign.Load())/float64(b.N), "foreign/op")
	for _, m := range []struct {
		d    time.Duration
		unit string
	}{{build, "build-ms/op"}, {steps.Read, "read-ms/op"}, {steps.Diff, "diff-ms/op"}, {steps.Encode, "encode-ms/op"}, {steps.Send, "send-ms/op"}} {
		b.ReportMetric(float64(m.d.Microseconds())/1000/float64(b.N), m.unit)
	}
	// CPU time moves less than wall time on a loaded machine; system time
	// is almost all the kernel's work inside the batch's sendmsg.
	b.ReportMetric(user.Seconds()/float64(b.N), "user-s/op")
	b.ReportMetric(sys.Seconds()/float64(b.N), "sys-s/op")
}

type cpuTime struct{ user, sys time.Duration }

// cpuTimes returns the process's user and system CPU time so far.
func cpuTimes(b *testing.B) cpuTime {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return cpuTime{time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())}
}

// BenchmarkKernelOneEndpointChange10kx10 applies a single endpoint change
// with 10k Services x 10 endpoints programmed: Build, Diff against the last
// applied state, and the kernel transaction.
func BenchmarkKernelOneEndpointChange10kx10(b *testing.B) { benchOneEndpointChange(b, 10000) }

// The same at 1k and 50k: the cost of one change must not grow with the
// number of Services (issue 11: at 50k within 1.5x of 1k).
func BenchmarkKernelOneEndpointChange1kx10(b *testing.B)  { benchOneEndpointChange(b, 1000) }
func BenchmarkKernelOneEndpointChange50kx10(b *testing.B) { benchOneEndpointChange(b, 50000) }

func benchOneEndpointChange(b *testing.B, n int) {
	st := scaleState(n, 10)
	rec := newReconciler(b, newTestNode(b, 0).node)
	builder := syncedBuilder(b, rec, st)
	round := 0
	for b.Loop() {
		round++
		changeOneEndpoint(st, n/2, round)
		res, err := rec.Sync(context.Background(), builder.Build(st), false)
		if err != nil {
			b.Fatal(err)
		}
		if res.Objects > 8 {
			b.Fatalf("one endpoint change touched %d objects", res.Objects)
		}
	}
}

// BenchmarkKernelFullResync10kx10 is the periodic full reconcile: read our
// tables back from the kernel and diff (nothing to change).
func BenchmarkKernelFullResync10kx10(b *testing.B) {
	st := scaleState(10000, 10)
	tn := newTestNode(b, 0)
	rec := newReconciler(b, tn.node)
	desired := nftrules.Build(st)
	if _, err := rec.Sync(context.Background(), desired, true); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		res, err := rec.Sync(context.Background(), desired, true)
		if err != nil {
			b.Fatal(err)
		}
		if res.Objects != 0 {
			b.Fatalf("full resync of an unchanged state touched %d objects", res.Objects)
		}
	}
}

// BenchmarkKernelVerify10kx10 is the periodic check that replaced the full
// resync in the daemon (Reconciler.Verify, nothing drifted), with 10
// endpoint changes a second synced beside it: max-sync-wait-ms is the
// longest such a sync took, i.e. the most a change was delayed by the
// check (a sync alone: BenchmarkKernelOneEndpointChange10kx10);
// max-lock-hold-ms the longest the check held the lock to re-read what
// the syncs changed during its reads, confirmed/op how many objects it
// re-read. The Churn variants sync 100 changes a second (the scale
// scenario's rate), so that nearly every read is interrupted.
func BenchmarkKernelVerify10kx10(b *testing.B)      { benchVerify(b, 10000, 100*time.Millisecond) }
func BenchmarkKernelVerify50kx10(b *testing.B)      { benchVerify(b, 50000, 100*time.Millisecond) }
func BenchmarkKernelVerifyChurn10kx10(b *testing.B) { benchVerify(b, 10000, 10*time.Millisecond) }
func BenchmarkKernelVerifyChurn50kx10(b *testing.B) { benchVerify(b, 50000, 10*time.Millisecond) }

func benchVerify(b *testing.B, n int, every time.Duration) {
	st := scaleState(n, 10)
	tn := newTestNode(b, 0)
	rec := newReconciler(b, tn.node)
	builder := nftrules.NewBuilder()
	if _, err := rec.Sync(context.Background(), builder.Build(st), true); err != nil {
		b.Fatal(err)
	}
	stop := make(chan struct{})
	waits := make(chan time.Duration)
	go func() {
		var longest time.Duration
		for round := 1; ; round++ {
			select {
			case <-stop:
				waits <- longest
				return
			default:
			}
			changeOneEndpoint(st, round%n, round)
			next := builder.Build(st)
			start := time.Now()
			if _, err := rec.Sync(context.Background(), next, false); err != nil {
				panic(err)
			}
			longest = max(longest, time.Since(start))
			time.Sleep(every)
		}
	}()
	var held time.Duration
	confirmed := 0
	for b.Loop() {
		res, err := rec.Verify(context.Background())
		if err != nil || res.Outcome != nft.VerifySame {
			b.Fatalf("Verify = %+v, %v with nothing drifted", res, err)
		}
		held, confirmed = max(held, res.Held), confirmed+res.Confirmed
	}
	close(stop)
	b.ReportMetric(float64((<-waits).Microseconds())/1000, "max-sync-wait-ms")
	b.ReportMetric(float64(held.Microseconds())/1000, "max-lock-hold-ms")
	b.ReportMetric(float64(confirmed)/float64(b.N), "confirmed/op")
}
