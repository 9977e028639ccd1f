package proxier_test

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"

	"github.com/nftproxy/nftproxy/e2e/netkit"
	"github.com/nftproxy/nftproxy/proxier/claims"
)

// TestKernelClusterIPCannotBeTaken: a Service listing another Service's
// ClusterIP as an externalIP (a tenant's attempt to capture its traffic)
// must not get a single connection, must not make any sync fail, and its
// endpoints flapping must not disturb the victim. Real connections from a
// pod through the node:
//
//	pod2 (client) ──┐
//	pod0 (victim)  ─┼─ node: nftproxy (informers over a fake clientset)
//	pod1 (attacker)─┘
func TestKernelClusterIPCannotBeTaken(t *testing.T) {
	node := netkit.NewTestNS(t, "nftk-claims-node")
	if err := node.EnableForwarding(); err != nil {
		t.Fatal(err)
	}
	// A default route into a namespace that does not forward, so that a
	// ClusterIP without endpoints is routed and meets the reject rule
	// instead of failing routing, and nothing leaves the lab.
	sink := netkit.NewTestNS(t, "nftk-claims-sink")
	if err := netkit.Link(node, "eth0", []netip.Prefix{netip.MustParsePrefix("192.168.50.1/24")},
		sink, "eth0", []netip.Prefix{netip.MustParsePrefix("192.168.50.2/24")}); err != nil {
		t.Fatal(err)
	}
	if err := node.AddDefaultRoute(netip.MustParseAddr("192.168.50.2")); err != nil {
		t.Fatal(err)
	}
	gw := netip.MustParseAddr("10.244.1.1")
	pods := make([]*netkit.NS, 3)
	podIP := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 244, 1, byte(10 + i)}) }
	for i := range pods {
		pods[i] = netkit.NewTestNS(t, fmt.Sprintf("nftk-claims-pod%d", i))
		if err := netkit.ConnectRoutedPod(node, fmt.Sprintf("veth%d", i), pods[i], []netip.Addr{podIP(i)}, []netip.Addr{gw}); err != nil {
			t.Fatal(err)
		}
	}
	for i, name := range []string{"victim", "attacker"} {
		srv, err := pods[i].ServeTCP(netip.AddrPortFrom(podIP(i), 8080), func(netip.AddrPort) string { return name })
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = srv.Close() })
	}

	client := fake.NewClientset(&v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}})
	ctx, _, run := startKernelProxier(t, node, client)
	// "a-attacker" sorts before "victim": the first-by-name rule alone
	// would hand it the address.
	create(t, ctx, client,
		clusterIPService("victim", "10.96.0.10"),
		withExternalIPs(clusterIPService("a-attacker", "10.96.0.11"), "10.96.0.10"),
		endpointSlice("victim", podIP(0), true),
		endpointSlice("a-attacker", podIP(1), true))

	victim := netip.MustParseAddrPort("10.96.0.10:80")
	attackerOwn := netip.MustParseAddrPort("10.96.0.11:80")
	answers := func(dst netip.AddrPort, want string) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Second)
		for {
			got, err := pods[2].DialTCP(dst, 500*time.Millisecond)
			if err == nil && got == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s answered %q (%v), want %q", dst, got, err, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	allFrom := func(dst netip.AddrPort, want string) {
		t.Helper()
		for i := 0; i < 20; i++ {
			if got, err := pods[2].DialTCP(dst, time.Second); err != nil || got != want {
				t.Fatalf("connection %d to %s: answered %q (%v), want %q", i, dst, got, err, want)
			}
		}
	}
	// The attacker's own ClusterIP works: both Services are programmed.
	answers(attackerOwn, "attacker")
	allFrom(victim, "victim")

	// The attacker's endpoints flap; each step is seen through its own
	// ClusterIP before the victim is checked again.
	for _, ready := range []bool{false, true, false, true} {
		update(t, ctx, client, endpointSlice("a-attacker", podIP(1), ready))
		if ready {
			answers(attackerOwn, "attacker")
		} else {
			refusedWithin(t, pods[2], attackerOwn)
		}
		allFrom(victim, "victim")
	}

	syncs, errs, rejected := run.counts()
	if len(errs) > 0 {
		t.Errorf("%d of %d syncs failed, first: %v", len(errs), syncs, errs[0])
	}
	reported := 0
	for _, r := range rejected {
		if r.Name == "victim" {
			t.Errorf("the victim was reported: %+v", r)
		}
		if r.Name == "a-attacker" && r.Reason == claims.ReasonExternalIsClusterIP {
			reported++
		}
	}
	if reported == 0 {
		t.Errorf("no %s report on the attacker; reports: %+v", claims.ReasonExternalIsClusterIP, rejected)
	}
}

func refusedWithin(t *testing.T, from *netkit.NS, dst netip.AddrPort) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		_, err := from.DialTCP(dst, 500*time.Millisecond)
		if netkit.IsRefused(err) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is not refused without endpoints: %v", dst, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func clusterIPService(name, ip string) *v1.Service {
	return &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec: v1.ServiceSpec{
			Type: v1.ServiceTypeClusterIP, ClusterIP: ip, ClusterIPs: []string{ip},
			Ports: []v1.ServicePort{{Name: "http", Port: 80, Protocol: v1.ProtocolTCP}},
		},
	}
}

func withExternalIPs(s *v1.Service, ips ...string) *v1.Service {
	s.Spec.ExternalIPs = ips
	return s
}

func endpointSlice(service string, addr netip.Addr, ready bool) *discovery.EndpointSlice {
	return &discovery.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "default", Name: service + "-1", Labels: map[string]string{discovery.LabelServiceName: service}},
		AddressType: discovery.AddressTypeIPv4,
		Ports:       []discovery.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: ptr.To(v1.ProtocolTCP)}},
		Endpoints: []discovery.Endpoint{{Addresses: []string{addr.String()}, NodeName: ptr.To("node-a"),
			Conditions: discovery.EndpointConditions{Ready: ptr.To(ready), Serving: ptr.To(ready)}}},
	}
}

func create(t *testing.T, ctx context.Context, c *fake.Clientset, objs ...any) {
	t.Helper()
	for _, o := range objs {
		var err error
		switch o := o.(type) {
		case *v1.Service:
			_, err = c.CoreV1().Services(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *discovery.EndpointSlice:
			_, err = c.DiscoveryV1().EndpointSlices(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func update(t *testing.T, ctx context.Context, c *fake.Clientset, s *discovery.EndpointSlice) {
	t.Helper()
	if _, err := c.DiscoveryV1().EndpointSlices(s.Namespace).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}
