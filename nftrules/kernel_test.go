package nftrules_test

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/nftproxy/nftproxy/e2e/netkit"
	"github.com/nftproxy/nftproxy/nftrules"
	"github.com/nftproxy/nftproxy/nftrules/nft"
	"github.com/nftproxy/nftproxy/proxier/model"
)

// svc returns a service port with endpoints on the given pods (all ready).
func svc(id uint32, name string, proto v1.Protocol, port uint16, clusterIPs []string, targetPort uint16, pods ...int) *model.ServicePort {
	sp := &model.ServicePort{
		Name:     model.ServicePortName{NamespacedName: types.NamespacedName{Namespace: "test", Name: name}, Protocol: proto},
		ID:       id,
		Port:     port,
		Protocol: proto,
	}
	for _, ip := range clusterIPs {
		sp.ClusterIPs = append(sp.ClusterIPs, netip.MustParseAddr(ip))
	}
	for _, p := range pods {
		for _, a := range []netip.Addr{podAddr4(p), podAddr6(p)} {
			// The test node's pods: local endpoints of node "node".
			sp.Endpoints = append(sp.Endpoints, model.Endpoint{Addr: a, Port: targetPort, Ready: true, Serving: true, NodeName: "node"})
		}
	}
	return sp
}

func apply(t testing.TB, rec *nft.Reconciler, st *model.State, full bool) nft.SyncResult {
	t.Helper()
	res, err := rec.Sync(context.Background(), nftrules.Build(st), full)
	if err != nil {
		t.Fatalf("sync: %v", err)
	}
	return res
}

func newReconciler(t testing.TB, ns *netkit.NS) *nft.Reconciler {
	t.Helper()
	rec := nftrules.NewReconciler(nft.Options{NetNSFd: ns.FD()})
	return rec
}

// who dials until every expected backend has answered (at most 60 tries)
// and returns the backends seen and the client addresses they reported.
func who(t *testing.T, from *netkit.NS, proto string, dst netip.AddrPort, want int) (backends map[string]bool, sources map[string]bool) {
	t.Helper()
	backends, sources = map[string]bool{}, map[string]bool{}
	for i := 0; i < 60 && len(backends) < want; i++ {
		var reply string
		var err error
		if proto == "udp" {
			reply, err = from.DialUDP(dst, "hello", time.Second)
		} else {
			reply, err = from.DialTCP(dst, time.Second)
		}
		if err != nil {
			t.Fatalf("%s %s from %s: %v", proto, dst, from.Name, err)
		}
		f := strings.Fields(reply)
		if len(f) != 2 {
			t.Fatalf("unexpected reply %q", reply)
		}
		backends[f[0]], sources[f[1]] = true, true
	}
	return backends, sources
}

func TestKernelClusterIPTraffic(t *testing.T) {
	tn := newTestNode(t, 3)
	tn.routed.ServeEcho(8080)
	st := &model.State{
		NodeName:     "node",
		ClusterCIDRs: clusterCIDRs,
		Services: []*model.ServicePort{
			svc(1, "web", v1.ProtocolTCP, 80, []string{"10.96.0.10", "fd96::10"}, 8080, 0, 1, 2),
			svc(2, "dns", v1.ProtocolUDP, 53, []string{"10.96.0.11", "fd96::11"}, 8080, 1, 2),
			svc(3, "empty", v1.ProtocolTCP, 80, []string{"10.96.0.12", "fd96::12"}, 8080),
			svc(4, "self", v1.ProtocolTCP, 81, []string{"10.96.0.13"}, 8080, 0),
			// Same port number on another protocol: its own endpoints.
			svc(5, "web-udp", v1.ProtocolUDP, 80, []string{"10.96.0.10"}, 8080, 0),
		},
	}
	rec := newReconciler(t, tn.node)
	apply(t, rec, st, true)

	cases := []struct {
		name       string
		from       *netkit.NS
		proto      string
		dst        string
		backends   []string
		masquerade bool // the backend sees the node, not the client
	}{
		{"tcp v4 from client reaches all endpoints, masqueraded", tn.client, "tcp", "10.96.0.10:80", []string{"pod0", "pod1", "pod2"}, true},
		{"tcp v6 from client reaches all endpoints, masqueraded", tn.client, "tcp", "[fd96::10]:80", []string{"pod0", "pod1", "pod2"}, true},
		{"udp v4 from a pod keeps the pod's address", tn.pods[0], "udp", "10.96.0.11:53", []string{"pod1", "pod2"}, false},
		{"udp v6 from a pod keeps the pod's address", tn.pods[0], "udp", "[fd96::11]:53", []string{"pod1", "pod2"}, false},
		{"same port on udp goes to that protocol's endpoints", tn.client, "udp", "10.96.0.10:80", []string{"pod0"}, true},
		{"hairpin: a pod reaches itself through its Service", tn.pods[0], "tcp", "10.96.0.13:81", []string{"pod0"}, true},
		{"tcp from the node itself", tn.node, "tcp", "10.96.0.10:80", []string{"pod0", "pod1", "pod2"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dst := netip.MustParseAddrPort(tc.dst)
			backends, sources := who(t, tc.from, tc.proto, dst, len(tc.backends))
			for _, b := range tc.backends {
				if !backends[b] {
					t.Errorf("%s never reached; reached %v", b, backends)
				}
			}
			if len(backends) != len(tc.backends) {
				t.Errorf("reached %v, want exactly %v", backends, tc.backends)
			}
			for src := range sources {
				clientSeen := src == clientAddr4.String() || src == clientAddr6.String() ||
					strings.HasPrefix(src, "10.244.1.1") && src != netkit.RoutedPodGateways[0].String() || strings.HasPrefix(src, "fd44::1") && src != netkit.RoutedPodGateways[1].String()
				if tc.from == tn.node {
					continue // the node's own address is its source either way
				}
				if tc.masquerade == clientSeen {
					t.Errorf("backend saw source %s; masquerade expected: %v", src, tc.masquerade)
				}
			}
		})
	}

	t.Run("no endpoints: refused at once", func(t *testing.T) {
		for _, dst := range []string{"10.96.0.12:80", "[fd96::12]:80"} {
			start := time.Now()
			_, err := tn.client.DialTCP(netip.MustParseAddrPort(dst), 3*time.Second)
			if !netkit.IsRefused(err) {
				t.Errorf("%s: got %v, want connection refused", dst, err)
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("%s: refusal took %v", dst, d)
			}
		}
	})

	t.Run("SCTP INIT is DNATed to an endpoint", func(t *testing.T) {
		sctp := &model.State{NodeName: "node", ClusterCIDRs: clusterCIDRs, Services: append(st.Services,
			svc(6, "sig", v1.ProtocolSCTP, 3868, []string{"10.96.0.14", "fd96::14"}, 3869, 2))}
		apply(t, rec, sctp, false)
		for _, dst := range []netip.AddrPort{netip.MustParseAddrPort("10.96.0.14:3868"), netip.MustParseAddrPort("[fd96::14]:3868")} {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			pkts, err := tn.pods[2].CaptureSCTP(ctx)
			if err != nil {
				cancel()
				t.Fatal(err)
			}
			src := clientAddr4
			want := podAddr4(2)
			if dst.Addr().Is6() {
				src, want = clientAddr6, podAddr6(2)
			}
			if err := tn.client.SendSCTPInit(src, 40000, dst); err != nil {
				cancel()
				t.Fatal(err)
			}
			select {
			case p := <-pkts:
				if p.Dst != want || p.DstPort != 3869 {
					t.Errorf("captured %+v, want destination %s:3869", p, want)
				}
			case <-ctx.Done():
				t.Errorf("no SCTP packet reached the endpoint for %s", dst)
			}
			cancel()
		}
	})
}

func TestKernelResyncIsEmptyAndEndpointChangeIsLocal(t *testing.T) {
	tn := newTestNode(t, 0)
	st := &model.State{NodeName: "node", ClusterCIDRs: clusterCIDRs}
	for i := uint32(1); i <= 50; i++ {
		st.Services = append(st.Services, svc(i, "s"+string(rune('a'+i%26))+string(rune('a'+i/26)), v1.ProtocolTCP, 80,
			[]string{netip.AddrFrom4([4]byte{10, 96, 1, byte(i)}).String()}, 8080, 0, 1))
	}
	rec := newReconciler(t, tn.node)
	if res := apply(t, rec, st, true); res.Objects == 0 {
		t.Fatal("first sync programmed nothing")
	}
	// Read back from the kernel: nothing to do.
	if res := apply(t, rec, st, true); res.Objects != 0 {
		live, _ := rec.ReadLive()
		t.Fatalf("re-applying the same state (full read) touched %d objects; diff:\n%v", res.Objects, nft.Diff(live, nftrules.Build(st)).Ops)
	}
	before, err := rec.ReadLive()
	if err != nil {
		t.Fatal(err)
	}
	// One endpoint of one Service changes.
	st.Services[7].Endpoints[0].Addr = netip.MustParseAddr("10.244.1.99")
	res := apply(t, rec, st, false)
	if res.Objects > 8 {
		t.Errorf("one endpoint change touched %d objects, want a handful", res.Objects)
	}
	after, err := rec.ReadLive()
	if err != nil {
		t.Fatal(err)
	}
	changed := nft.Diff(before, after)
	for _, op := range changed.Ops {
		if op.Chain != nil && op.Chain.Name != nftrules.ServiceChainName(st.Services[7].Name) {
			t.Errorf("chain %s changed", op.Chain.Name)
		}
		for _, e := range op.ElementList() {
			if s := e.KeyString() + " " + e.ValueString(); !strings.Contains(s, "10.244.1.") || strings.Contains(s, "10.244.1.11 ") {
				if op.Set.Name != nftrules.SetHairpin && !strings.HasPrefix(e.KeyString(), "131072") && !strings.HasPrefix(e.KeyString(), "131073") {
					t.Errorf("element of another Service changed: %s %s %s", op.Kind, op.Set.Name, s)
				}
			}
		}
	}
	// And the kernel really holds the new endpoint.
	live := after.Tables[nft.IPv4].Sets.Get(nftrules.EndpointMapName(nft.TCP, st.Services[7].ID))
	found := false
	for _, e := range live.Elements() {
		if e.ValueString() == "10.244.1.99 . 8080" {
			found = true
		}
	}
	if !found {
		t.Error("new endpoint not in the kernel's endpoint map")
	}
}

func TestKernelRulesetIsNftReadable(t *testing.T) {
	tn := newTestNode(t, 0)
	st := &model.State{NodeName: "node", ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/14"), netip.MustParsePrefix("fd44::/64")},
		Services: []*model.ServicePort{
			svc(1, "web", v1.ProtocolTCP, 80, []string{"10.96.0.10", "fd96::10"}, 8080, 0, 1),
			svc(2, "dns", v1.ProtocolUDP, 53, []string{"10.96.0.11", "fd96::11"}, 53, 1),
			svc(3, "sig", v1.ProtocolSCTP, 3868, []string{"10.96.0.12", "fd96::12"}, 3868, 2),
			svc(4, "empty", v1.ProtocolTCP, 80, []string{"10.96.0.13"}, 80),
		}}
	// External traffic: NodePorts (one without endpoints), LB IPs with
	// source ranges, ETP and ITP Local, localhost NodePorts.
	st.NodeName = "node"
	st.NodePortIPs = []netip.Addr{nodeAddr4, nodeAddr6, netip.MustParseAddr("127.0.0.1")}
	lb := svc(5, "lb", v1.ProtocolTCP, 443, []string{"10.96.0.14", "fd96::14"}, 8443, 0, 1)
	lb.NodePort, lb.ExternalPolicyLocal, lb.InternalPolicyLocal = 30443, true, true
	lb.Endpoints[0].NodeName = "node"
	lb.LoadBalancerIPs = []netip.Addr{netip.MustParseAddr("203.0.113.1"), netip.MustParseAddr("2001:db8::1")}
	lb.ExternalIPs = []netip.Addr{netip.MustParseAddr("198.51.100.1")}
	lb.SourceRanges = []netip.Prefix{netip.MustParsePrefix("192.168.0.0/16"), netip.MustParsePrefix("10.1.2.3/32")}
	np := svc(6, "np", v1.ProtocolUDP, 53, []string{"10.96.0.15"}, 53)
	np.NodePort = 30053
	sticky := svc(7, "sticky", v1.ProtocolTCP, 8443, []string{"10.96.0.16", "fd96::16"}, 8443, 1, 2)
	sticky.SessionAffinityClientIP, sticky.AffinityTimeoutSeconds, sticky.NodePort = true, 600, 30444
	st.Services = append(st.Services, lb, np, sticky)
	rec := newReconciler(t, tn.node)
	apply(t, rec, st, true)
	listing := tn.node.NftList(t, "ruleset")
	for _, want := range []string{
		"typeof numgen random mod 1 : ip daddr . tcp dport",
		"ip daddr . meta l4proto . th dport vmap @service-ips",
		"dnat ip to numgen random mod 2 offset 16384 map @endpoints-tcp-0",
		"ip saddr != 10.244.0.0/14 ip daddr @cluster-ips jump mark-for-masquerade",
		"masquerade fully-random",
		"ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports",
		"fib saddr type local jump mark-for-masquerade",
		"flags dynamic,timeout",
		"typeof numgen random mod 1 : verdict",
		"ip saddr 10.1.2.3 return",
		"ip daddr 127.0.0.0/8 ip saddr != 127.0.0.0/8 drop",
		"ct state new ip6 daddr . meta l4proto . th dport vmap @firewall-ips",
		"udp . 30053 : goto reject-chain",
	} {
		if !strings.Contains(listing, want) {
			t.Errorf("nft listing lacks %q:\n%s", want, listing)
		}
	}
	// nft accepts its own print-out (in a fresh namespace).
	file := filepath.Join(t.TempDir(), "ruleset.nft")
	if err := os.WriteFile(file, []byte(listing), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := tn.client.Exec("nft", "-c", "-f", file); err != nil {
		t.Errorf("nft -c -f rejects its own listing: %v\n%s\n%s", err, out, listing)
	}
	// And our own rendering is accepted too (it is what --dump-format=nft prints).
	if err := os.WriteFile(file, []byte(nftrules.Build(st).Render()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := tn.client.Exec("nft", "-c", "-f", file); err != nil {
		t.Errorf("nft -c -f rejects our rendering: %v\n%s", err, out)
	}
}

func TestKernelLargeMapsAreComplete(t *testing.T) {
	tn := newTestNode(t, 0)
	st := &model.State{NodeName: "node"}
	const services = 3000
	for i := 0; i < services; i++ {
		sp := svc(uint32(i+1), "s", v1.ProtocolTCP, uint16(1000+i%50000), []string{netip.AddrFrom4([4]byte{10, 96, byte(i >> 8), byte(i)}).String()}, 80)
		sp.Name.Name = "s" + strings.Repeat("x", i%3) + string(rune('a'+i%26)) + netip.AddrFrom4([4]byte{0, 0, byte(i >> 8), byte(i)}).String()
		sp.Endpoints = []model.Endpoint{{Addr: netip.AddrFrom4([4]byte{10, 200, byte(i >> 8), byte(i)}), Port: 80, Ready: true}}
		st.Services = append(st.Services, sp)
	}
	rec := newReconciler(t, tn.node)
	apply(t, rec, st, true)
	live, err := rec.ReadLive()
	if err != nil {
		t.Fatal(err)
	}
	t4 := live.Tables[nft.IPv4]
	endpoints := 0
	for name, s := range t4.Sets.All() {
		if strings.HasPrefix(name, "endpoints-tcp-") {
			endpoints += s.Len()
		}
	}
	if endpoints != services {
		t.Errorf("endpoint maps hold %d elements, want %d", endpoints, services)
	}
	if n := t4.Sets.Get(nftrules.SetServiceIPs).Len(); n != services {
		t.Errorf("service-ips holds %d elements, want %d", n, services)
	}
}

func TestKernelForeignTablesUntouched(t *testing.T) {
	tn := newTestNode(t, 0)
	foreign := "table ip other {\n\tchain c {\n\t\ttype nat hook prerouting priority -100; policy accept;\n\t\tip daddr 10.96.0.10 counter\n\t}\n}\n"
	tn.node.NftLoad(t, foreign)
	listForeign := func() string { return tn.node.NftList(t, "table", "ip", "other") }
	before := listForeign()
	rec := newReconciler(t, tn.node)
	apply(t, rec, &model.State{Services: []*model.ServicePort{svc(1, "web", v1.ProtocolTCP, 80, []string{"10.96.0.10"}, 80, 0)}}, true)
	if err := rec.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if err := rec.Cleanup(); err != nil {
		t.Fatalf("second cleanup: %v", err)
	}
	if after := listForeign(); after != before {
		t.Errorf("foreign table changed:\n%s\nvs\n%s", before, after)
	}
	if l := tn.node.NftList(t, "ruleset"); strings.Contains(l, nft.TableName) {
		t.Errorf("our table survived cleanup:\n%s", l)
	}
}
