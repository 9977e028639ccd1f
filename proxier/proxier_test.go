package proxier

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/clock"

	"github.com/nftproxy/nftproxy/informers"
	"github.com/nftproxy/nftproxy/nftrules"
	"github.com/nftproxy/nftproxy/nftrules/nft/nftfake"
	"github.com/nftproxy/nftproxy/proxier/model"
)

type env struct {
	t       *testing.T
	client  *fake.Clientset
	tracker *informers.Tracker
	rec     *nftfake.Fake
	p       *Proxier

	mu       sync.Mutex
	syncs    []SyncInfo
	rejected []model.Rejection
}

const testNode = "node-a"

func newEnv(t *testing.T, minSync time.Duration, rec *nftfake.Fake) *env {
	t.Helper()
	return newEnvWith(t, minSync, rec, func(*Config) {})
}

// newEnvWith is newEnv with a change to the proxier's Config.
func newEnvWith(t *testing.T, minSync time.Duration, rec *nftfake.Fake, change func(*Config)) *env {
	t.Helper()
	e := &env{t: t, client: fake.NewClientset(), rec: rec}
	e.create(&v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: testNode, Labels: map[string]string{LabelZone: "zone-a"}},
		Status:     v1.NodeStatus{Addresses: []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: "192.168.0.10"}}},
	})
	e.tracker = informers.NewTracker(clock.RealClock{})
	inf, err := informers.New(e.client, informers.Config{NodeName: testNode}, e.tracker)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); inf.Shutdown() })
	inf.Start(ctx)
	if err := inf.WaitForSync(ctx); err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		NodeName:      testNode,
		ClusterCIDRs:  []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")},
		MinSyncPeriod: minSync,
		SyncPeriod:    2 * time.Hour, // no periodic full sync during a test
		OnSync: func(i SyncInfo) {
			e.mu.Lock()
			e.syncs = append(e.syncs, i)
			e.mu.Unlock()
		},
		OnReject: func(r model.Rejection) {
			e.mu.Lock()
			e.rejected = append(e.rejected, r)
			e.mu.Unlock()
		},
	}
	change(&cfg)
	e.p, err = New(cfg, inf, e.tracker, rec)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// run starts the proxier's loop for the rest of the test.
func (e *env) run() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.p.Run(ctx) }()
	e.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			e.t.Errorf("Run: %v", err)
		}
	})
}

func (e *env) create(objs ...any) {
	e.t.Helper()
	ctx := context.Background()
	for _, o := range objs {
		var err error
		switch o := o.(type) {
		case *v1.Service:
			_, err = e.client.CoreV1().Services(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *discovery.EndpointSlice:
			_, err = e.client.DiscoveryV1().EndpointSlices(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *v1.Node:
			_, err = e.client.CoreV1().Nodes().Create(ctx, o, metav1.CreateOptions{})
		default:
			err = fmt.Errorf("unexpected %T", o)
		}
		if err != nil {
			e.t.Fatal(err)
		}
	}
}

// eventually polls cond; the timeout only guards against hangs.
func (e *env) eventually(what string, cond func() bool) {
	e.t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), time.Millisecond, 30*time.Second, true,
		func(context.Context) (bool, error) { return cond(), nil })
	if err != nil {
		e.t.Fatalf("waiting for %s: %v", what, err)
	}
}

// recorded waits until the tracker holds changes for this many Services.
func (e *env) recorded(services, endpoints int) {
	e.t.Helper()
	e.eventually(fmt.Sprintf("%d service and %d endpoint changes", services, endpoints), func() bool {
		s, ep := e.tracker.Pending()
		return s == services && ep == endpoints
	})
}

func (e *env) lastSync() SyncInfo {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.syncs) == 0 {
		e.t.Fatal("no sync yet")
	}
	return e.syncs[len(e.syncs)-1]
}

func (e *env) syncCount() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.syncs)
}

func service(name, clusterIP string) *v1.Service {
	return &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, ResourceVersion: "1"},
		Spec: v1.ServiceSpec{
			Type: v1.ServiceTypeClusterIP, ClusterIP: clusterIP, ClusterIPs: []string{clusterIP},
			Ports: []v1.ServicePort{{Name: "http", Port: 80, Protocol: v1.ProtocolTCP}},
		},
	}
}

func slice(name, svc string, addrs ...string) *discovery.EndpointSlice {
	port, portName, proto := int32(8080), "http", v1.ProtocolTCP
	s := &discovery.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: "ns", Name: name, ResourceVersion: "1",
			Labels: map[string]string{discovery.LabelServiceName: svc},
		},
		AddressType: discovery.AddressTypeIPv4,
		Ports:       []discovery.EndpointPort{{Name: &portName, Protocol: &proto, Port: &port}},
	}
	for _, a := range addrs {
		s.Endpoints = append(s.Endpoints, discovery.Endpoint{Addresses: []string{a}})
	}
	return s
}

func nn(name string) types.NamespacedName { return types.NamespacedName{Namespace: "ns", Name: name} }

// summarize renders a State's services as "ns/name/tcp/port#ID:endpoints".
func summarize(st *model.State) []string {
	var out []string
	for sp := range st.All() {
		out = append(out, fmt.Sprintf("%s#%d:%d", sp.Name, sp.ID, len(sp.Endpoints)))
	}
	return out
}

func TestProxierProgramsEvents(t *testing.T) {
	rec := nftfake.New()
	e := newEnv(t, 0, rec)
	e.create(service("a", "10.96.0.1"), slice("a-1", "a", "10.244.1.1"))
	e.recorded(1, 1)
	e.run()

	// The first sync is full and carries the Service, the Node's data and
	// the configuration.
	e.eventually("initial sync", func() bool { return e.syncCount() >= 1 })
	first := e.lastSync()
	if !first.Full || first.Err != nil {
		t.Fatalf("first sync: %+v", first)
	}
	st := first.State
	if got, want := summarize(st), []string{"ns/a/tcp/http#1:1"}; !reflect.DeepEqual(got, want) {
		t.Errorf("services = %v, want %v", got, want)
	}
	if st.NodeName != testNode || st.NodeZone != "zone-a" ||
		!reflect.DeepEqual(st.NodeIPs, []netip.Addr{netip.MustParseAddr("192.168.0.10")}) ||
		len(st.ClusterCIDRs) != 1 {
		t.Errorf("node part of state = %+v", st)
	}
	// What was handed to the reconciler is exactly Build of that State.
	if rs := rec.Records()[0].Desired; !reflect.DeepEqual(rs, nftrules.Build(st)) {
		t.Error("reconciler got a ruleset other than Build(State)")
	}

	// An endpoint change: a partial sync, same ID, and a latency start.
	before := time.Now()
	updated := slice("a-1", "a", "10.244.1.1", "10.244.2.2")
	updated.ResourceVersion = "2"
	if _, err := e.client.DiscoveryV1().EndpointSlices("ns").Update(context.Background(), updated, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.eventually("endpoint sync", func() bool {
		s := e.lastSync().State
		ports := slices.Collect(s.All())
		return len(ports) == 1 && len(ports[0].Endpoints) == 2
	})
	last := e.lastSync()
	if last.Full || last.Converted != 1 || last.OldestChange.Before(before) {
		t.Errorf("endpoint sync: full=%v converted=%d oldest=%v (before %v)", last.Full, last.Converted, last.OldestChange, before)
	}
	if got := summarize(last.State); !reflect.DeepEqual(got, []string{"ns/a/tcp/http#1:2"}) {
		t.Errorf("services = %v", got)
	}

	// A second Service gets the next ID; deleting the first frees ID 1,
	// which a third Service then reuses.
	e.create(service("b", "10.96.0.2"))
	e.eventually("b programmed", func() bool { return e.lastSync().State.Len() == 2 })
	if err := e.client.CoreV1().Services("ns").Delete(context.Background(), "a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.eventually("a removed", func() bool { return e.lastSync().State.Len() == 1 })
	e.create(service("c", "10.96.0.3"))
	e.eventually("c programmed", func() bool { return e.lastSync().State.Len() == 2 })
	if got, want := summarize(e.lastSync().State), []string{"ns/b/tcp/http#2:0", "ns/c/tcp/http#1:0"}; !reflect.DeepEqual(got, want) {
		t.Errorf("services = %v, want %v", got, want)
	}
	// Every partial sync on the way was accepted by the (fake) kernel and
	// left it holding the last State's rules.
	if err := rec.Compare(nftrules.Build(e.lastSync().State)); err != nil {
		t.Errorf("the kernel does not hold the last State: %v", err)
	}
}

func TestProxierCoalescesBursts(t *testing.T) {
	rec := nftfake.New()
	gate := make(chan struct{})
	var started atomic.Int32
	rec.BeforeSync = func(ctx context.Context) error { // each sync waits for a value
		started.Add(1)
		select {
		case <-gate:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	e := newEnv(t, 0, rec)
	e.run()
	gate <- struct{}{} // let the initial sync through

	// The first change starts a sync, held in the reconciler...
	e.create(service("s0", "10.96.0.100"))
	e.eventually("second sync started", func() bool { return started.Load() == 2 })
	// ...while a burst of 20 changes arrives.
	for i := 1; i <= 20; i++ {
		e.create(service(fmt.Sprintf("s%d", i), fmt.Sprintf("10.96.0.%d", i)))
	}
	e.recorded(20, 0)
	gate <- struct{}{} // finish the second sync
	gate <- struct{}{} // the burst: one single sync

	e.eventually("burst synced", func() bool { return e.syncCount() == 3 })
	if n := e.lastSync().State.Len(); n != 21 {
		t.Errorf("burst sync has %d services, want 21", n)
	}
	if s, ep := e.tracker.Pending(); s != 0 || ep != 0 || len(rec.Records()) != 3 {
		t.Errorf("after the burst: pending %d/%d, reconciler calls %d; want 0/0, 3", s, ep, len(rec.Records()))
	}
}

// TestProxierHonoursMinSyncPeriod: with a min sync period of an hour, the
// initial sync and one more (upstream's burst of two) run at once; changes
// after that wait. "Wait" is proven, not assumed after a sleep: the sync
// loop reaches idle with every change recorded, no wake-up left, and the
// changes still pending, i.e. it has decided not to sync them.
func TestProxierHonoursMinSyncPeriod(t *testing.T) {
	rec := nftfake.New()
	e := newEnv(t, time.Hour, rec)
	var mu sync.Mutex
	deferred := false // seen idle with the 4 changes pending and no wake-up
	e.p.onIdle = func() {
		s, _ := e.tracker.Pending()
		if s == 4 && len(e.tracker.Wake()) == 0 {
			mu.Lock()
			deferred = true
			mu.Unlock()
		}
	}
	e.run()
	e.eventually("initial sync", func() bool { return e.syncCount() == 1 })
	e.create(service("s0", "10.96.0.1"))
	e.eventually("the burst's second sync", func() bool { return e.syncCount() == 2 })
	for i := 1; i <= 4; i++ {
		e.create(service(fmt.Sprintf("s%d", i), fmt.Sprintf("10.96.0.%d", i+1)))
	}
	e.recorded(4, 0)
	e.eventually("the sync loop deferring the 4 changes", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return deferred
	})
	if n := len(rec.Records()); n != 2 {
		t.Errorf("reconciler called %d times within the min sync period, want 2 (the burst)", n)
	}
}

// The remaining tests call sync directly: no runner, fully deterministic.

func TestProxierSkipsNoOpChanges(t *testing.T) {
	rec := nftfake.New()
	e := newEnv(t, 0, rec)
	ctx := context.Background()
	e.create(service("a", "10.96.0.1"))
	e.recorded(1, 0) // in the informer cache before the initial load
	e.p.loadAll()
	if err := e.p.sync(ctx, true); err != nil {
		t.Fatal(err)
	}
	// An annotation edit converts to the same ports: no reconciler call.
	s := service("a", "10.96.0.1")
	s.ResourceVersion, s.Annotations = "2", map[string]string{"note": "x"}
	if _, err := e.client.CoreV1().Services("ns").Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.recorded(1, 0)
	if err := e.p.sync(ctx, false); err != nil {
		t.Fatal(err)
	}
	if len(rec.Records()) != 1 {
		t.Errorf("no-op change reached the reconciler: %d calls", len(rec.Records()))
	}
	// A periodic full sync always reaches it.
	if err := e.p.sync(ctx, true); err != nil || len(rec.Records()) != 2 || !rec.Records()[1].Full {
		t.Errorf("full sync: err=%v calls=%d", err, len(rec.Records()))
	}
}

func TestProxierFailedSyncIsRetriedFull(t *testing.T) {
	rec := nftfake.New()
	e := newEnv(t, 0, rec)
	ctx := context.Background()
	e.p.loadAll()
	if err := e.p.sync(ctx, true); err != nil {
		t.Fatal(err)
	}
	rec.FailNext(errors.New("injected failure"))
	e.create(service("a", "10.96.0.1"))
	e.recorded(1, 0)
	if err := e.p.sync(ctx, false); err == nil {
		t.Fatal("sync with failing reconciler succeeded")
	}
	failed := e.lastSync()
	if err := e.p.sync(ctx, false); err != nil {
		t.Fatal(err)
	}
	retry := e.lastSync()
	if !retry.Full || retry.State.Len() != 1 {
		t.Errorf("retry: full=%v services=%d; want a full sync with the change", retry.Full, retry.State.Len())
	}
	if retry.OldestChange.IsZero() || !retry.OldestChange.Equal(failed.OldestChange) {
		t.Errorf("retry lost the pending change time: %v vs %v", retry.OldestChange, failed.OldestChange)
	}
	if err := e.p.sync(ctx, false); err != nil || len(rec.Records()) != 3 {
		t.Errorf("after a successful retry nothing is left to sync: err=%v calls=%d", err, len(rec.Records()))
	}
}

func TestProxierReportsRejections(t *testing.T) {
	rec := nftfake.New()
	e := newEnv(t, 0, rec)
	bad := service("bad", "10.96.0.1")
	bad.Spec.Ports = append(bad.Spec.Ports, v1.ServicePort{Name: "x", Port: 0})
	e.create(bad, slice("bad-1", "bad", "127.0.0.1", "10.244.0.5"))
	e.recorded(1, 1)
	e.p.loadAll()
	if err := e.p.sync(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	if got := summarize(e.lastSync().State); !reflect.DeepEqual(got, []string{"ns/bad/tcp/http#1:1"}) {
		t.Errorf("services = %v", got)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	var reasons []string
	for _, r := range e.rejected {
		reasons = append(reasons, r.Kind+":"+r.Reason)
	}
	if want := []string{"Service:InvalidPort", "EndpointSlice:InvalidEndpoint"}; !reflect.DeepEqual(reasons, want) {
		t.Errorf("rejections = %v, want %v", reasons, want)
	}
}

func TestNewValidatesConfig(t *testing.T) {
	src, tr, rec := (*fakeSource)(nil), informers.NewTracker(clock.RealClock{}), nftfake.New()
	for _, cfg := range []Config{
		{SyncPeriod: time.Second}, // no node name
		{NodeName: "n"},           // no sync period
		{NodeName: "n", SyncPeriod: time.Second, MinSyncPeriod: -1},
		{NodeName: "n", SyncPeriod: time.Second, MinSyncPeriod: time.Minute},
		{NodeName: "n", SyncPeriod: time.Second, ClusterCIDRs: []netip.Prefix{{}}},
	} {
		if _, err := New(cfg, src, tr, rec); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
	if _, err := New(Config{NodeName: "n", SyncPeriod: time.Second}, nil, tr, rec); err == nil {
		t.Error("New without source succeeded")
	}
}

// fakeSource only exists to give New a non-nil Source where none is used.
type fakeSource struct{ Source }
