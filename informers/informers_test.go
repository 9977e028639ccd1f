package informers

import (
	"context"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/fake"
	clocktesting "k8s.io/utils/clock/testing"
)

func svcObj(name string, lbls map[string]string) *v1.Service {
	return &v1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, Labels: lbls}}
}

func sliceObj(name, svc string) *discovery.EndpointSlice {
	return &discovery.EndpointSlice{ObjectMeta: metav1.ObjectMeta{
		Namespace: "ns", Name: name, Labels: map[string]string{discovery.LabelServiceName: svc},
	}, AddressType: discovery.AddressTypeIPv4}
}

func nn(name string) types.NamespacedName { return types.NamespacedName{Namespace: "ns", Name: name} }

func start(t *testing.T, objs ...any) (*Informers, *Tracker, *fake.Clientset) {
	t.Helper()
	client := fake.NewClientset()
	for _, o := range objs {
		var err error
		switch o := o.(type) {
		case *v1.Service:
			_, err = client.CoreV1().Services(o.Namespace).Create(context.Background(), o, metav1.CreateOptions{})
		case *discovery.EndpointSlice:
			_, err = client.DiscoveryV1().EndpointSlices(o.Namespace).Create(context.Background(), o, metav1.CreateOptions{})
		case *v1.Node:
			_, err = client.CoreV1().Nodes().Create(context.Background(), o, metav1.CreateOptions{})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	tr := NewTracker(clocktesting.NewFakeClock(time.Unix(1000, 0)))
	inf, err := New(client, Config{NodeName: "node-a"}, tr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); inf.Shutdown() })
	inf.Start(ctx)
	if err := inf.WaitForSync(ctx); err != nil {
		t.Fatal(err)
	}
	return inf, tr, client
}

func TestInformersInitialListAndLookups(t *testing.T) {
	inf, tr, _ := start(t,
		svcObj("a", nil),
		svcObj("theirs", map[string]string{LabelServiceProxyName: "other"}),
		sliceObj("a-1", "a"), sliceObj("a-2", "a"), sliceObj("b-1", "b"),
		&v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}},
	)
	select {
	case <-tr.Wake():
	default:
		t.Error("tracker was not woken")
	}
	c := tr.Take()
	if _, ok := c.Services[nn("a")]; !ok || len(c.Services) != 1 {
		t.Errorf("Services = %v, want only ns/a (the labelled one is filtered)", c.Services)
	}
	if len(c.Endpoints) != 2 || !c.Node || c.Oldest.IsZero() {
		t.Errorf("changes = %+v", c)
	}
	if s, err := inf.Service(nn("a")); err != nil || s == nil {
		t.Errorf("Service(a) = %v, %v", s, err)
	}
	if s, err := inf.Service(nn("missing")); err != nil || s != nil {
		t.Errorf("Service(missing) = %v, %v; want nil, nil", s, err)
	}
	if l, err := inf.EndpointSlices(nn("a")); err != nil || len(l) != 2 {
		t.Errorf("EndpointSlices(a) = %d slices, %v", len(l), err)
	}
	if n, err := inf.Node(); err != nil || n == nil {
		t.Errorf("Node() = %v, %v", n, err)
	}
	if keys := inf.ServiceKeys(); len(keys) != 1 || keys[0] != nn("a") {
		t.Errorf("ServiceKeys() = %v, want [ns/a]", keys)
	}
}

func TestInformersRecordChanges(t *testing.T) {
	ctx := context.Background()
	inf, tr, client := start(t, sliceObj("s", "a"))
	tr.Take()

	// A slice moving to another Service changes both.
	moved := sliceObj("s", "b")
	moved.ResourceVersion = "2"
	if _, err := client.DiscoveryV1().EndpointSlices("ns").Update(ctx, moved, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Another node's Node is not ours.
	if _, err := client.CoreV1().Nodes().Create(ctx, &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-b"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.CoreV1().Services("ns").Create(ctx, svcObj("c", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := client.CoreV1().Services("ns").Delete(ctx, "c", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// One informer's handler sees its events in order: once d is
	// recorded, c's deletion has been too (else it could be recorded after
	// the Take below).
	if _, err := client.CoreV1().Services("ns").Create(ctx, svcObj("d", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	err := wait.PollUntilContextTimeout(ctx, time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		s, e := tr.Pending()
		return s == 2 && e == 2, nil
	})
	if err != nil {
		s, e := tr.Pending()
		t.Fatalf("pending services=%d endpoints=%d: %v", s, e, err)
	}
	c := tr.Take()
	if _, ok := c.Endpoints[nn("a")]; !ok {
		t.Errorf("old Service of moved slice not recorded: %v", c.Endpoints)
	}
	if _, ok := c.Endpoints[nn("b")]; !ok {
		t.Errorf("new Service of moved slice not recorded: %v", c.Endpoints)
	}
	if c.Node {
		t.Error("another node's change was recorded")
	}
	// What the changes woke a sync for is what it reads.
	if a, _ := inf.EndpointSlices(nn("a")); len(a) != 0 {
		t.Errorf("the moved slice is still read as a's: %d slices", len(a))
	}
	if b, _ := inf.EndpointSlices(nn("b")); len(b) != 1 || b[0].ResourceVersion != "2" {
		t.Errorf("b's slices = %v, want the moved one", b)
	}
	if !tr.Take().Empty() {
		t.Error("Take did not reset the tracker")
	}
}

// TestInformersSliceUpdateRecordsOnce: an update of a slice that stays
// with its Service is one change and one wake-up (two made the proxier run
// a second, empty sync that spent a token of its burst).
func TestInformersSliceUpdateRecordsOnce(t *testing.T) {
	ctx := context.Background()
	_, tr, client := start(t, sliceObj("s", "a"))
	tr.Take()
	<-tr.Wake() // left by the initial list
	before := tr.Stats().EndpointChanges
	changed := sliceObj("s", "a")
	changed.ResourceVersion = "2"
	changed.Endpoints = []discovery.Endpoint{{Addresses: []string{"10.0.0.1"}}}
	if _, err := client.DiscoveryV1().EndpointSlices("ns").Update(ctx, changed, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-tr.Wake():
	case <-time.After(10 * time.Second):
		t.Fatal("no wake-up")
	}
	tr.Take()
	time.Sleep(100 * time.Millisecond) // a second record would signal again
	select {
	case <-tr.Wake():
		t.Error("a second wake-up for one update")
	default:
	}
	if n := tr.Stats().EndpointChanges - before; n != 1 {
		t.Errorf("one update recorded %d endpoint changes", n)
	}
}

func TestNewRequiresNodeName(t *testing.T) {
	if _, err := New(fake.NewClientset(), Config{}, NewTracker(clocktesting.NewFakeClock(time.Now()))); err == nil {
		t.Error("New without node name succeeded")
	}
}

// The start-up timeline: once synced, each informer says how many objects
// its initial list held, when it arrived and when our handler had seen it.
func TestInformersRecordEachInitialList(t *testing.T) {
	before := time.Now()
	inf, _, _ := start(t,
		svcObj("a", nil), svcObj("b", nil),
		svcObj("theirs", map[string]string{LabelServiceProxyName: "other"}),
		sliceObj("a-1", "a"), sliceObj("a-2", "a"), sliceObj("b-1", "b"),
		&v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}},
	)
	want := map[string]int{"Services": 2, "EndpointSlices": 3, "Node": 1}
	times := inf.SyncTimes()
	if len(times) != len(want) {
		t.Fatalf("SyncTimes = %+v, want one per informer", times)
	}
	for _, st := range times {
		if n, ok := want[st.What]; !ok || st.Objects != n {
			t.Errorf("%s: %d objects, want %d", st.What, st.Objects, n)
		}
		if st.Listed.Before(before) || st.Synced.Before(st.Listed) || time.Since(st.Synced) < 0 {
			t.Errorf("%s: listed %v, synced %v: want start <= listed <= synced <= now", st.What, st.Listed, st.Synced)
		}
	}
}

// WaitForSync gives up when its context ends before the initial lists.
func TestInformersWaitForSyncEndsWithContext(t *testing.T) {
	inf, err := New(fake.NewClientset(), Config{NodeName: "node-a"}, NewTracker(clocktesting.NewFakeClock(time.Unix(1000, 0))))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // never started: nothing can sync
	if err := inf.WaitForSync(ctx); err == nil {
		t.Error("WaitForSync of informers never started returned no error")
	}
}
