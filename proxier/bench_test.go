package proxier_test

import (
	"context"
	"fmt"
	"testing"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"

	"github.com/nftproxy/nftproxy/e2e/netkit"
	"github.com/nftproxy/nftproxy/proxier"
)

func benchSlice(i int, gen int) *discovery.EndpointSlice {
	s := &discovery.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "bench", Name: fmt.Sprintf("svc-%05d-abc", i), Labels: map[string]string{discovery.LabelServiceName: fmt.Sprintf("svc-%05d", i)}},
		AddressType: discovery.AddressTypeIPv4,
		Ports:       []discovery.EndpointPort{{Name: ptr.To(""), Port: ptr.To[int32](8080), Protocol: ptr.To(v1.ProtocolTCP)}},
	}
	for j := 0; j < 10; j++ {
		k := i*10 + j
		addr := fmt.Sprintf("10.%d.%d.%d", 128+k>>16, byte(k>>8), byte(k))
		if j == 9 && gen > 0 { // the last one: it stays last in address order
			addr = fmt.Sprintf("10.250.%d.%d", byte(gen>>8), byte(gen))
		}
		s.Endpoints = append(s.Endpoints, discovery.Endpoint{Addresses: []string{addr}, Conditions: discovery.EndpointConditions{Ready: ptr.To(true)}})
	}
	return s
}

// BenchmarkProxierOneEndpointChange10kx10 measures event to kernel: an
// EndpointSlice update of one Service among 10k (10 endpoints each) goes
// through the informer, conversion, Build, Diff and the netlink batch;
// each iteration ends when the proxier reports the sync committed.
// min-sync-period is 0 (the issue measures "min-sync-period aside").
func BenchmarkProxierOneEndpointChange10kx10(b *testing.B) { benchProxierOneEndpointChange(b, 10000) }

// The same among 1k and 50k Services: issue 11 wants the cost of one
// change independent of the number of Services.
func BenchmarkProxierOneEndpointChange1kx10(b *testing.B)  { benchProxierOneEndpointChange(b, 1000) }
func BenchmarkProxierOneEndpointChange50kx10(b *testing.B) { benchProxierOneEndpointChange(b, 50000) }

func benchProxierOneEndpointChange(b *testing.B, n int) {
	netkit.RequireRoot(b)
	client := fake.NewClientset(benchObjects(n)...)
	_ = netkit.CleanupPrefix("nftk-pbench")
	ns, err := netkit.New("nftk-pbench")
	if err != nil {
		b.Fatal(err)
	}
	defer ns.Delete()
	synced := make(chan proxier.SyncInfo, 16)
	inf, p, _ := newBenchProxier(b, client, ns.FD(), func(si proxier.SyncInfo) { synced <- si })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	inf.Start(ctx)
	if err := inf.WaitForSync(ctx); err != nil {
		b.Fatal(err)
	}
	go p.Run(ctx)
	if si := <-synced; si.Err != nil { // the initial full sync
		b.Fatal(si.Err)
	}
	gen := 0
	b.ResetTimer()
	for b.Loop() {
		gen++
		if _, err := client.DiscoveryV1().EndpointSlices("bench").Update(ctx, benchSlice(n/2, gen), metav1.UpdateOptions{}); err != nil {
			b.Fatal(err)
		}
		si := <-synced
		if si.Err != nil || si.Result.Objects == 0 || si.Result.Objects > 8 {
			b.Fatalf("sync after one endpoint change: err %v, %d objects", si.Err, si.Result.Objects)
		}
	}
}
