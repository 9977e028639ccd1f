package proxier_test

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"

	"github.com/nftproxy/nftproxy/e2e/netkit"
	"github.com/nftproxy/nftproxy/informers"
	"github.com/nftproxy/nftproxy/nftrules"
	"github.com/nftproxy/nftproxy/nftrules/nft"
	"github.com/nftproxy/nftproxy/proxier"
	"github.com/nftproxy/nftproxy/proxier/conntrack"
	"github.com/nftproxy/nftproxy/proxier/model"
)

// TestKernelFollowsAPIObjects wires informers (over client-go's fake
// clientset), the proxier and the real reconciler in a network namespace of
// its own, and checks that the kernel follows Service and EndpointSlice
// changes within a second. The lab e2e suite does the same against a real
// kube-apiserver.
func TestKernelFollowsAPIObjects(t *testing.T) {
	ns := netkit.NewTestNS(t, "nftk-proxier")
	client := fake.NewClientset(&v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}})
	ctx, rec, _ := startKernelProxier(t, ns, client)

	// dispatch returns the verdict of a ClusterIP:port/tcp in the kernel's
	// service-ips map, or "" when absent.
	dispatch := func(ip string, port uint16) string {
		live, err := rec.ReadLive()
		if err != nil || live.Tables[nft.IPv4] == nil {
			return ""
		}
		key := ip + " . 6 . " + strconv.Itoa(int(port))
		if e, ok := live.Tables[nft.IPv4].Sets.Get(nftrules.SetServiceIPs).Lookup(key); ok {
			return e.ValueString()
		}
		if e, ok := live.Tables[nft.IPv4].Sets.Get(nftrules.SetNoEndpointServices).Lookup(key); ok {
			return e.ValueString()
		}
		return ""
	}
	within := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("kernel did not follow within 1s: %s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	svc := &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web"},
		Spec: v1.ServiceSpec{
			Type: v1.ServiceTypeClusterIP, ClusterIP: "10.96.0.10", ClusterIPs: []string{"10.96.0.10"},
			Ports: []v1.ServicePort{{Name: "http", Port: 80, Protocol: v1.ProtocolTCP}},
		},
	}
	if _, err := client.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	within("a Service without endpoints is rejected", func() bool { return dispatch("10.96.0.10", 80) == "goto reject-chain" })

	slice := &discovery.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "default", Name: "web-abc", Labels: map[string]string{discovery.LabelServiceName: "web"}},
		AddressType: discovery.AddressTypeIPv4,
		Ports:       []discovery.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: ptr.To(v1.ProtocolTCP)}},
		Endpoints: []discovery.Endpoint{
			{Addresses: []string{"10.244.1.5"}, Conditions: discovery.EndpointConditions{Ready: ptr.To(true)}},
		},
	}
	if _, err := client.DiscoveryV1().EndpointSlices("default").Create(ctx, slice, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	chain := "goto " + nftrules.ServiceChainName(mustName("default", "web", "http"))
	within("endpoints make the Service dispatch to its chain", func() bool { return dispatch("10.96.0.10", 80) == chain })

	if err := client.CoreV1().Services("default").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	within("a deleted Service leaves no rules", func() bool { return dispatch("10.96.0.10", 80) == "" })
	live, err := rec.ReadLive()
	if err != nil {
		t.Fatal(err)
	}
	if live.Tables[nft.IPv4].Chains.Get(nftrules.ServiceChainName(mustName("default", "web", "http"))) != nil {
		t.Error("the deleted Service's chain is still in the kernel")
	}
}

// proxierRun records what a proxier started by startKernelProxier did.
type proxierRun struct {
	mu       sync.Mutex
	syncs    int
	errs     []error
	rejected []model.Rejection
	// repairs are the ends of the syncs that repaired foreign changes.
	repairs []time.Time
}

func (r *proxierRun) counts() (syncs int, errs []error, rejected []model.Rejection) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.syncs, slices.Clone(r.errs), slices.Clone(r.rejected)
}

// startKernelProxier runs informers over client and a proxier programming
// ns through the real reconciler (node "node-a", no rate limit), which
// also watches for foreign changes as in nftproxy, until the test ends.
func startKernelProxier(t *testing.T, ns *netkit.NS, client *fake.Clientset) (context.Context, *nft.Reconciler, *proxierRun) {
	t.Helper()
	tracker := informers.NewTracker(clock.RealClock{})
	inf, err := informers.New(client, informers.Config{NodeName: "node-a"}, tracker)
	if err != nil {
		t.Fatal(err)
	}
	rec := nftrules.NewReconciler(nft.Options{NetNSFd: ns.FD()})
	// As in production: stale and (after repairs) unNATed conntrack
	// entries are deleted.
	cleaner, err := conntrack.NewCleaner(ns.FD(), conntrack.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleaner.Close)
	run := &proxierRun{}
	p, err := proxier.New(proxier.Config{NodeName: "node-a", MinSyncPeriod: 0, SyncPeriod: time.Minute, Conntrack: cleaner,
		OnSync: func(i proxier.SyncInfo) {
			run.mu.Lock()
			defer run.mu.Unlock()
			run.syncs++
			if i.Err != nil {
				run.errs = append(run.errs, i.Err)
			} else if i.ForeignChanges > 0 {
				run.repairs = append(run.repairs, i.Start.Add(i.Duration))
			}
		},
		OnReject: func(r model.Rejection) {
			run.mu.Lock()
			defer run.mu.Unlock()
			run.rejected = append(run.rejected, r)
		},
		Watcher: rec,
	}, inf, tracker, rec)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	t.Cleanup(func() {
		cancel()
		<-done
		inf.Shutdown()
	})
	inf.Start(ctx)
	if err := inf.WaitForSync(ctx); err != nil {
		t.Fatal(err)
	}
	go func() { done <- p.Run(ctx) }()
	return ctx, rec, run
}

func mustName(ns, name, port string) model.ServicePortName {
	return model.ServicePortName{NamespacedName: types.NamespacedName{Namespace: ns, Name: name}, Port: port, Protocol: v1.ProtocolTCP}
}
