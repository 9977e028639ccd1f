package nftrules_test

import (
	"net/netip"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"

	"github.com/nftproxy/nftproxy/e2e/netkit"
	"github.com/nftproxy/nftproxy/proxier/model"
)

// External traffic with real packets. pod0 and pod1 are this node's
// endpoints (NodeName "node"); pod2 is, for the model, on another node
// ("other") although it sits behind the same namespace: traffic policies
// must then never pick it for Local traffic.

var (
	lbIP4  = netip.MustParseAddr("203.0.113.10")
	lbIP6  = netip.MustParseAddr("2001:db8::10")
	extIP4 = netip.MustParseAddr("198.51.100.10")
)

// extSvc is svc with endpoints on pods; those in local run on this node.
func extSvc(id uint32, name string, proto v1.Protocol, port uint16, clusterIPs []string, pods []int, local map[int]bool, change func(*model.ServicePort)) *model.ServicePort {
	sp := svc(id, name, proto, port, clusterIPs, 8080, pods...)
	for i := range sp.Endpoints {
		sp.Endpoints[i].NodeName = "other"
		for p := range local {
			if sp.Endpoints[i].Addr == podAddr4(p) || sp.Endpoints[i].Addr == podAddr6(p) {
				sp.Endpoints[i].NodeName = "node"
			}
		}
	}
	change(sp)
	return sp
}

// expectReach dials until every wanted backend answered and checks that
// no other did and what source address the backends saw: the client's own
// (sourceKept) or another one (masqueraded).
func expectReach(t *testing.T, from *netkit.NS, proto string, dst netip.AddrPort, backends []string, client netip.Addr, sourceKept bool) {
	t.Helper()
	got, sources := who(t, from, proto, dst, len(backends))
	for _, b := range backends {
		if !got[b] {
			t.Errorf("%s %s: %s never answered; answered: %v", proto, dst, b, got)
		}
	}
	if len(got) != len(backends) {
		t.Errorf("%s %s: answered by %v, want exactly %v", proto, dst, got, backends)
	}
	for src := range sources {
		if kept := src == client.String(); kept != sourceKept {
			t.Errorf("%s %s: backend saw source %s; client %s, source kept expected: %v", proto, dst, src, client, sourceKept)
		}
	}
}

// expectNoAnswer checks that a TCP connection fails: refused at once
// (rejected) or timed out (dropped).
func expectNoAnswer(t *testing.T, from *netkit.NS, dst netip.AddrPort, refused bool) {
	t.Helper()
	start := time.Now()
	reply, err := from.DialTCP(dst, 2*time.Second)
	switch {
	case err == nil:
		t.Errorf("%s from %s: answered %q, want no answer", dst, from.Name, reply)
	case refused && !netkit.IsRefused(err):
		t.Errorf("%s from %s: %v, want connection refused", dst, from.Name, err)
	case refused && time.Since(start) > time.Second:
		t.Errorf("%s from %s: refusal took %v", dst, from.Name, time.Since(start))
	case !refused && !netkit.IsTimeout(err):
		t.Errorf("%s from %s: %v, want a timeout (dropped)", dst, from.Name, err)
	}
}

func ap(a netip.Addr, port uint16) netip.AddrPort { return netip.AddrPortFrom(a, port) }

func TestKernelExternalTraffic(t *testing.T) {
	tn := newTestNode(t, 3)
	tn.addSecondClient(t)
	tn.routed.ServeEcho(8080)
	local := map[int]bool{0: true, 1: true}
	st := &model.State{
		NodeName:     "node",
		ClusterCIDRs: clusterCIDRs,
		NodePortIPs:  []netip.Addr{nodeAddr4, nodeAddr6},
		Services: []*model.ServicePort{
			extSvc(1, "np", v1.ProtocolTCP, 80, []string{"10.96.0.10", "fd96::10"}, []int{0, 1, 2}, local, func(sp *model.ServicePort) {
				sp.NodePort = 30080
			}),
			extSvc(2, "np-local", v1.ProtocolTCP, 80, []string{"10.96.0.11", "fd96::11"}, []int{0, 2}, local, func(sp *model.ServicePort) {
				sp.NodePort, sp.ExternalPolicyLocal = 30081, true
			}),
			extSvc(3, "np-remote", v1.ProtocolTCP, 80, []string{"10.96.0.12"}, []int{2}, local, func(sp *model.ServicePort) {
				sp.NodePort, sp.ExternalPolicyLocal = 30082, true
			}),
			extSvc(4, "np-udp", v1.ProtocolUDP, 53, []string{"10.96.0.13", "fd96::13"}, []int{1, 2}, local, func(sp *model.ServicePort) {
				sp.NodePort = 30053
			}),
			extSvc(5, "np-none", v1.ProtocolTCP, 80, []string{"10.96.0.14", "fd96::14"}, nil, local, func(sp *model.ServicePort) {
				sp.NodePort = 30090
			}),
			extSvc(6, "lb", v1.ProtocolTCP, 80, []string{"10.96.0.15", "fd96::15"}, []int{0, 1, 2}, local, func(sp *model.ServicePort) {
				sp.NodePort = 30083
				sp.LoadBalancerIPs = []netip.Addr{lbIP4, lbIP6}
				sp.SourceRanges = []netip.Prefix{netip.MustParsePrefix("192.168.50.0/24"), netip.MustParsePrefix("fd50::/64")}
			}),
			extSvc(7, "ext-local", v1.ProtocolTCP, 80, []string{"10.96.0.16"}, []int{1, 2}, local, func(sp *model.ServicePort) {
				sp.ExternalIPs = []netip.Addr{extIP4}
				sp.ExternalPolicyLocal = true
			}),
			extSvc(8, "itp", v1.ProtocolTCP, 80, []string{"10.96.0.17", "fd96::17"}, []int{0, 2}, local, func(sp *model.ServicePort) {
				sp.InternalPolicyLocal = true
			}),
			extSvc(9, "itp-remote", v1.ProtocolTCP, 80, []string{"10.96.0.18"}, []int{2}, local, func(sp *model.ServicePort) {
				sp.InternalPolicyLocal = true
			}),
		},
	}
	rec := newReconciler(t, tn.node)
	apply(t, rec, st, true)

	t.Run("NodePort, ETP Cluster: all endpoints, masqueraded", func(t *testing.T) {
		expectReach(t, tn.client, "tcp", ap(nodeAddr4, 30080), []string{"pod0", "pod1", "pod2"}, clientAddr4, false)
		expectReach(t, tn.client, "tcp", ap(nodeAddr6, 30080), []string{"pod0", "pod1", "pod2"}, clientAddr6, false)
		expectReach(t, tn.client, "udp", ap(nodeAddr4, 30053), []string{"pod1", "pod2"}, clientAddr4, false)
		expectReach(t, tn.client, "udp", ap(nodeAddr6, 30053), []string{"pod1", "pod2"}, clientAddr6, false)
	})
	t.Run("NodePort from the node itself and from a pod: masqueraded", func(t *testing.T) {
		expectReach(t, tn.node, "tcp", ap(nodeAddr4, 30080), []string{"pod0", "pod1", "pod2"}, nodeAddr4, false)
		expectReach(t, tn.pods[0], "tcp", ap(nodeAddr4, 30080), []string{"pod0", "pod1", "pod2"}, podAddr4(0), false)
	})
	t.Run("NodePort only on --nodeport-addresses", func(t *testing.T) {
		// The node's address on client2's link is not a NodePort address.
		expectNoAnswer(t, tn.client2, ap(node2Addr4, 30080), true) // nothing listens: the node's own RST
	})
	t.Run("NodePort, ETP Local: local endpoint only, client address kept", func(t *testing.T) {
		expectReach(t, tn.client, "tcp", ap(nodeAddr4, 30081), []string{"pod0"}, clientAddr4, true)
		expectReach(t, tn.client, "tcp", ap(nodeAddr6, 30081), []string{"pod0"}, clientAddr6, true)
	})
	t.Run("NodePort, ETP Local: pods (unmasqueraded) and the node (masqueraded) reach all endpoints", func(t *testing.T) {
		expectReach(t, tn.pods[1], "tcp", ap(nodeAddr4, 30081), []string{"pod0", "pod2"}, podAddr4(1), true)
		expectReach(t, tn.node, "tcp", ap(nodeAddr4, 30081), []string{"pod0", "pod2"}, nodeAddr4, false)
	})
	t.Run("NodePort, ETP Local without local endpoint: dropped", func(t *testing.T) {
		expectNoAnswer(t, tn.client, ap(nodeAddr4, 30082), false)
		expectReach(t, tn.pods[0], "tcp", ap(nodeAddr4, 30082), []string{"pod2"}, podAddr4(0), true)
	})
	t.Run("NodePort without endpoints: refused at once", func(t *testing.T) {
		expectNoAnswer(t, tn.client, ap(nodeAddr4, 30090), true)
		expectNoAnswer(t, tn.client, ap(nodeAddr6, 30090), true)
	})
	t.Run("LoadBalancer IP with source ranges", func(t *testing.T) {
		expectReach(t, tn.client, "tcp", ap(lbIP4, 80), []string{"pod0", "pod1", "pod2"}, clientAddr4, false)
		expectReach(t, tn.client, "tcp", ap(lbIP6, 80), []string{"pod0", "pod1", "pod2"}, clientAddr6, false)
		expectNoAnswer(t, tn.client2, ap(lbIP4, 80), false)
		expectNoAnswer(t, tn.client2, ap(lbIP6, 80), false)
		// The NodePort of that Service is not filtered.
		expectReach(t, tn.client2, "tcp", ap(nodeAddr4, 30083), []string{"pod0", "pod1", "pod2"}, client2Addr4, false)
	})
	t.Run("external IP, ETP Local", func(t *testing.T) {
		expectReach(t, tn.client, "tcp", ap(extIP4, 80), []string{"pod1"}, clientAddr4, true)
		// A pod short-circuits to all endpoints (kubernetes#131765).
		expectReach(t, tn.pods[0], "tcp", ap(extIP4, 80), []string{"pod1", "pod2"}, podAddr4(0), true)
	})
	t.Run("ITP Local", func(t *testing.T) {
		expectReach(t, tn.pods[1], "tcp", netip.MustParseAddrPort("10.96.0.17:80"), []string{"pod0"}, podAddr4(1), true)
		expectReach(t, tn.pods[1], "tcp", netip.MustParseAddrPort("[fd96::17]:80"), []string{"pod0"}, podAddr6(1), true)
		expectNoAnswer(t, tn.pods[1], netip.MustParseAddrPort("10.96.0.18:80"), false)
	})

	t.Run("localhost NodePorts", func(t *testing.T) {
		lo := ap(netip.MustParseAddr("127.0.0.1"), 30080)
		expectNoAnswer(t, tn.node, lo, true) // not enabled: nothing listens there
		if err := tn.node.Sysctl("net.ipv4.conf.all.route_localnet", "1"); err != nil {
			t.Fatal(err)
		}
		loSt := *st
		loSt.NodePortIPs = append([]netip.Addr{netip.MustParseAddr("127.0.0.1")}, st.NodePortIPs...)
		apply(t, rec, &loSt, false)
		expectReach(t, tn.node, "tcp", lo, []string{"pod0", "pod1", "pod2"}, netip.MustParseAddr("127.0.0.1"), false)
		// ETP Local: the node is masqueraded and reaches all endpoints.
		expectReach(t, tn.node, "tcp", ap(netip.MustParseAddr("127.0.0.1"), 30081), []string{"pod0", "pod2"}, netip.MustParseAddr("127.0.0.1"), false)
		apply(t, rec, st, false)
		expectNoAnswer(t, tn.node, lo, true)
	})

	t.Run("changes stop the old exposure", func(t *testing.T) {
		changed := *st
		changed.Services = append([]*model.ServicePort(nil), st.Services...)
		np := *st.Services[0]
		np.NodePort = 30085 // a new nodePort
		changed.Services[0] = &np
		lb := *st.Services[5]
		lb.LoadBalancerIPs, lb.SourceRanges, lb.NodePort = nil, nil, 0 // LoadBalancer -> ClusterIP
		changed.Services[5] = &lb
		loc := *st.Services[1]
		loc.ExternalPolicyLocal = false // ETP Local -> Cluster
		changed.Services[1] = &loc
		apply(t, rec, &changed, false)

		expectNoAnswer(t, tn.client, ap(nodeAddr4, 30080), true)
		expectReach(t, tn.client, "tcp", ap(nodeAddr4, 30085), []string{"pod0", "pod1", "pod2"}, clientAddr4, false)
		expectNoAnswer(t, tn.client, ap(lbIP4, 80), false) // routed to the client, which does not forward
		expectNoAnswer(t, tn.client, ap(nodeAddr4, 30083), true)
		expectReach(t, tn.client, "tcp", ap(nodeAddr4, 30081), []string{"pod0", "pod2"}, clientAddr4, false)

		// And back, read from the kernel (full sync): the first state again.
		apply(t, rec, st, true)
		expectReach(t, tn.client, "tcp", ap(nodeAddr4, 30081), []string{"pod0"}, clientAddr4, true)
		expectNoAnswer(t, tn.client2, ap(lbIP4, 80), false)
		if res := apply(t, rec, st, true); res.Objects != 0 {
			t.Errorf("re-applying the same state touched %d objects", res.Objects)
		}
	})
}
