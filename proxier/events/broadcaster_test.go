package events_test

import (
	"context"
	"errors"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/clock"

	"github.com/nftproxy/nftproxy/informers"
	"github.com/nftproxy/nftproxy/nftrules/nft/nftfake"
	"github.com/nftproxy/nftproxy/proxier"
	"github.com/nftproxy/nftproxy/proxier/events"
)

// TestEventsThroughTheAPI runs a real proxier on a fake clientset with the
// real broadcaster: a malformed Service gets a Warning Event (with its
// UID, so kubectl describe shows it) and a failing sync one on the Node.
func TestEventsThroughTheAPI(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const node = "node-a"
	bad := &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "bad", UID: "uid-bad"},
		Spec: v1.ServiceSpec{Type: v1.ServiceTypeClusterIP, ClusterIP: "10.96.0.20", ClusterIPs: []string{"10.96.0.20"},
			Ports: []v1.ServicePort{{Name: "x", Port: 80, Protocol: "FOO"}}},
	}
	client := fake.NewClientset(&v1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}}, bad)
	tracker := informers.NewTracker(clock.RealClock{})
	inf, err := informers.New(client, informers.Config{NodeName: node}, tracker)
	if err != nil {
		t.Fatal(err)
	}
	inf.Start(ctx)
	defer inf.Shutdown()
	if err := inf.WaitForSync(ctx); err != nil {
		t.Fatal(err)
	}
	b, rec := events.StartBroadcaster(ctx, client, node)
	defer b.Shutdown()
	r := events.New(rec, node, inf.Service, nil)
	kernel := nftfake.New()
	kernel.FailNext(errors.New("injected netlink failure")) // the first sync
	p, err := proxier.New(proxier.Config{NodeName: node, SyncPeriod: time.Hour, OnReject: r.Reject, OnSync: r.SyncDone}, inf, tracker, kernel)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() { cancel(); <-done }()

	svcEvent := waitEvent(t, client, "ns", "Service", "bad", "UnknownProtocol")
	if svcEvent.Type != v1.EventTypeWarning || svcEvent.InvolvedObject.UID != "uid-bad" || svcEvent.Source.Component != "nftproxy" || svcEvent.Source.Host != node {
		t.Errorf("Service event %+v", svcEvent)
	}
	nodeEvent := waitEvent(t, client, metav1.NamespaceDefault, "Node", node, events.ReasonSyncFailed)
	if nodeEvent.Type != v1.EventTypeWarning || nodeEvent.InvolvedObject.UID != node {
		t.Errorf("Node event %+v", nodeEvent)
	}
	// The runner retries after its 1 s backoff, and the fake accepts it.
	waitEvent(t, client, metav1.NamespaceDefault, "Node", node, events.ReasonSyncRecovered)
}

func waitEvent(t *testing.T, client *fake.Clientset, ns, kind, name, reason string) v1.Event {
	t.Helper()
	var found v1.Event
	err := wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		l, err := client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		for _, e := range l.Items {
			if e.InvolvedObject.Kind == kind && e.InvolvedObject.Name == name && e.Reason == reason {
				found = e
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("no %s event on %s %s/%s: %v", reason, kind, ns, name, err)
	}
	return found
}
