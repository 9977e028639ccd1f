package proxier_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/clock"

	"github.com/nftproxy/nftproxy/e2e/netkit"
	"github.com/nftproxy/nftproxy/informers"
	"github.com/nftproxy/nftproxy/nftrules"
	"github.com/nftproxy/nftproxy/nftrules/nft"
	"github.com/nftproxy/nftproxy/proxier"
)

// BenchmarkProxierColdStart10kx10 is the start of the proxy without the
// apiserver: informers over an in-memory clientset of 10k Services × 10
// endpoints (no network, no decoding) up to the first sync committed in an
// empty network namespace. What it reports per op (ms) is the proxy's own
// share of the start-up timeline the daemon logs ("First rules in the
// kernel"): handling the initial lists (transform, caches, handlers),
// the initial load (conversion of every Service), and the first sync's
// Build, Diff, encoding and sending (the kernel's commit).
func BenchmarkProxierColdStart10kx10(b *testing.B) {
	netkit.RequireRoot(b)
	client := fake.NewClientset(benchObjects(10000)...)
	var lists, load, sync, build time.Duration
	var steps nft.SyncTiming
	for b.Loop() {
		b.StopTimer()
		_ = netkit.CleanupPrefix("nftk-pstart")
		ns, err := netkit.New("nftk-pstart")
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		b.StartTimer()

		began := time.Now()
		synced := make(chan proxier.SyncInfo, 1)
		inf, p, rec := newBenchProxier(b, client, ns.FD(), func(si proxier.SyncInfo) {
			select {
			case synced <- si:
			default:
			}
		})
		inf.Start(ctx)
		if err := inf.WaitForSync(ctx); err != nil {
			b.Fatal(err)
		}
		listed := time.Now()
		ran := make(chan struct{})
		go func() { defer close(ran); _ = p.Run(ctx) }()
		si := <-synced
		if si.Err != nil {
			b.Fatal(si.Err)
		}

		b.StopTimer()
		lists += listed.Sub(began)
		load += si.Start.Sub(listed)
		sync += si.Duration
		build += si.Build
		steps.Diff += si.Result.Timing.Diff
		steps.Encode += si.Result.Timing.Encode
		steps.Send += si.Result.Timing.Send
		cancel()
		<-ran
		inf.Shutdown()
		_ = rec.Close()
		_ = ns.Delete()
		b.StartTimer()
	}
	for _, m := range []struct {
		d    time.Duration
		unit string
	}{{lists, "lists-ms/op"}, {load, "load-ms/op"}, {sync, "sync-ms/op"}, {build, "build-ms/op"},
		{steps.Diff, "diff-ms/op"}, {steps.Encode, "encode-ms/op"}, {steps.Send, "send-ms/op"}} {
		b.ReportMetric(float64(m.d.Microseconds())/1000/float64(b.N), m.unit)
	}
}

// benchObjects are the Node node-a and n Services (one TCP port each) with
// one EndpointSlice of 10 endpoints each (benchSlice).
func benchObjects(n int) []runtime.Object {
	objs := []runtime.Object{&v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}}}
	for i := range n {
		ip := fmt.Sprintf("10.96.%d.%d", byte(i>>8), byte(i))
		objs = append(objs, &v1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: fmt.Sprintf("svc-%05d", i)},
			Spec:       v1.ServiceSpec{ClusterIP: ip, ClusterIPs: []string{ip}, Ports: []v1.ServicePort{{Port: 80, Protocol: v1.ProtocolTCP}}},
		}, benchSlice(i, 0))
	}
	return objs
}

// newBenchProxier wires informers over client to a proxier of node-a
// programming the network namespace nsFD, with onSync told of every sync.
// Nothing is started.
func newBenchProxier(b *testing.B, client kubernetes.Interface, nsFD int, onSync func(proxier.SyncInfo)) (*informers.Informers, *proxier.Proxier, *nft.Reconciler) {
	b.Helper()
	tracker := informers.NewTracker(clock.RealClock{})
	inf, err := informers.New(client, informers.Config{NodeName: "node-a"}, tracker)
	if err != nil {
		b.Fatal(err)
	}
	rec := nftrules.NewReconciler(nft.Options{NetNSFd: nsFD})
	p, err := proxier.New(proxier.Config{NodeName: "node-a", SyncPeriod: time.Hour, OnSync: onSync}, inf, tracker, rec)
	if err != nil {
		b.Fatal(err)
	}
	return inf, p, rec
}
