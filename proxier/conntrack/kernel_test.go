package conntrack_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"

	"github.com/nftproxy/nftproxy/e2e/netkit"
	"github.com/nftproxy/nftproxy/nftrules"
	"github.com/nftproxy/nftproxy/nftrules/nft"
	"github.com/nftproxy/nftproxy/proxier/conntrack"
	"github.com/nftproxy/nftproxy/proxier/model"
)

var (
	clusterIP = netip.MustParseAddrPort("10.96.0.20:53")
	nodeIP    = netip.MustParseAddr("192.168.60.1")
	nodePort  = netip.AddrPortFrom(nodeIP, 30053)
	// extHost is a host outside the cluster, reached through the node
	// (masqueraded), that serves UDP on the NodePort's port number.
	extHost = netip.MustParseAddrPort("203.0.113.7:30053")
)

// lab is one node with a client and two pods, its ruleset and a cleaner.
type lab struct {
	t              *testing.T
	node, client   *netkit.NS
	pods           []*netkit.NS
	rec            *nft.Reconciler
	b              *nftrules.Builder
	cleaner        *conntrack.Cleaner
	deleted, walks int
}

func newLab(t *testing.T) *lab {
	node, client, pods := topology(t)
	for i, pod := range pods {
		name := fmt.Sprintf("pod%d", i)
		srv, err := pod.ServeUDP(netip.AddrPortFrom(podAddr(i), 5353), func(netip.AddrPort) string { return name })
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close() })
	}
	rec := nftrules.NewReconciler(nft.Options{NetNSFd: node.FD()})
	l := &lab{t: t, node: node, client: client, pods: pods, rec: rec, b: nftrules.NewBuilder()}
	var err error
	l.cleaner, err = conntrack.NewCleaner(node.FD(), conntrack.Options{OnResult: func(r conntrack.Result) {
		if r.Err != nil {
			t.Errorf("cleanup: %v", r.Err)
		}
		l.deleted += r.Deleted
		l.walks += r.Walks
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.cleaner.Close)
	return l
}

// dnsState is a UDP Service (ClusterIP 10.96.0.20:53, NodePort 30053 on
// the node's address) with the given pods as endpoints.
func dnsState(backends ...int) *model.State {
	sp := &model.ServicePort{ID: 1, Port: 53, Protocol: v1.ProtocolUDP, NodePort: 30053,
		ClusterIPs: []netip.Addr{clusterIP.Addr()}}
	for _, i := range backends {
		sp.Endpoints = append(sp.Endpoints, model.Endpoint{Addr: podAddr(i), Port: 5353, Ready: true, Serving: true})
	}
	sp.Name.Namespace, sp.Name.Name, sp.Name.Protocol = "test", "dns", v1.ProtocolUDP
	return &model.State{NodeIPs: []netip.Addr{nodeIP}, NodePortIPs: []netip.Addr{nodeIP}, Services: []*model.ServicePort{sp}}
}

// program syncs the rules of st; with clean, it hands st to the cleaner
// and waits for the cleanup, as the proxier does after a sync.
func (l *lab) program(st *model.State, clean bool) {
	l.t.Helper()
	if _, err := l.rec.Sync(context.Background(), l.b.Build(st), false); err != nil {
		l.t.Fatal(err)
	}
	if clean {
		l.cleaner.Programmed(conntrack.NewIndex(st))
		l.cleaner.Wait()
	}
}

// dial opens a UDP socket in ns connected to dst: one socket, one source
// port, one conntrack entry.
func dial(t *testing.T, ns *netkit.NS, dst netip.AddrPort) *net.UDPConn {
	t.Helper()
	var conn *net.UDPConn
	if err := ns.Do(func() (err error) {
		conn, err = net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(dst))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// ask sends on conn until an answer comes (20 × 50 ms) and returns it.
func ask(t *testing.T, conn *net.UDPConn) string {
	t.Helper()
	buf := make([]byte, 64)
	for i := 0; i < 20; i++ {
		// A write fails (ECONNREFUSED) after an ICMP error: no answer
		// this round.
		_, _ = conn.Write([]byte("who"))
		_ = conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if n, err := conn.Read(buf); err == nil {
			return string(buf[:n])
		}
	}
	return "no answer"
}

// TestKernelUDPClientMovesToNewBackend is upstream's "should be able to
// preserve UDP traffic when server pod cycles" on one node: a UDP client
// keeps sending from one socket; the Service's only endpoint is replaced;
// without cleanup the client stays stuck on the old backend, with cleanup
// its next datagram reaches the new one.
func TestKernelUDPClientMovesToNewBackend(t *testing.T) {
	netkit.RequireRoot(t)
	l := newLab(t)
	l.program(dnsState(0), true)
	conn := dial(t, l.client, clusterIP)
	if got := ask(t, conn); got != "pod0" {
		t.Fatalf("before the change the client reached %q, want pod0", got)
	}

	l.program(dnsState(1), false)
	if got := ask(t, conn); got != "pod0" {
		t.Fatalf("control: without cleanup the conntrack entry should still lead to pod0, got %q", got)
	}
	l.cleaner.Programmed(conntrack.NewIndex(dnsState(1)))
	l.cleaner.Wait()
	if l.deleted == 0 {
		t.Error("cleanup deleted no entry")
	}
	if got := ask(t, conn); got != "pod1" {
		t.Errorf("after cleanup the client reached %q, want pod1", got)
	}
}

// TestKernelCleanupIsPerServiceAndEndpoint has real UDP flows through the
// ClusterIP and through the NodePort to both endpoints of a Service, plus
// a pod's masqueraded egress flow to an outside host's port 30053 — the
// NodePort's number. Removing one endpoint must delete exactly its flows
// through both frontends: the other endpoint's flows and the egress flow
// (which matches the NodePort by destination port alone, as upstream's
// filter and the earlier one here did) survive.
func TestKernelCleanupIsPerServiceAndEndpoint(t *testing.T) {
	netkit.RequireRoot(t)
	l := newLab(t)
	// The outside host, behind the node's uplink, and the egress NAT a
	// cluster's pod network has.
	if err := l.client.AddAddr("eth0", netip.PrefixFrom(extHost.Addr(), 32)); err != nil {
		t.Fatal(err)
	}
	ext, err := l.client.ServeUDP(extHost, func(netip.AddrPort) string { return "ext" })
	if err != nil {
		t.Fatal(err)
	}
	defer ext.Close()
	for _, cmd := range [][]string{
		{"nft", "add", "table", "ip", "egress"},
		{"nft", "add", "chain", "ip", "egress", "post", "{ type nat hook postrouting priority 100 ; }"},
		{"nft", "add", "rule", "ip", "egress", "post", "ip", "saddr", "10.244.0.0/16", "oifname", "eth0", "masquerade"},
	} {
		if out, err := l.node.Exec(cmd...); err != nil {
			t.Fatalf("%v: %v\n%s", cmd, err, out)
		}
	}
	l.program(dnsState(0, 1), true)

	egress := dial(t, l.pods[0], extHost)
	if got := ask(t, egress); got != "ext" {
		t.Fatalf("egress flow reached %q, want ext", got)
	}
	// One socket pinned to each endpoint through each frontend: the
	// choice is random, so dial until both are seen.
	pinned := map[netip.AddrPort]map[string]*net.UDPConn{}
	for _, front := range []netip.AddrPort{clusterIP, nodePort} {
		pinned[front] = map[string]*net.UDPConn{}
		for i := 0; i < 40 && len(pinned[front]) < 2; i++ {
			c := dial(t, l.client, front)
			got := ask(t, c)
			if got != "pod0" && got != "pod1" {
				t.Fatalf("%v answered %q", front, got)
			}
			if pinned[front][got] == nil {
				pinned[front][got] = c
			}
		}
		if len(pinned[front]) < 2 {
			t.Fatalf("40 sockets to %v all reached the same pod", front)
		}
	}

	// flows counts the entries to the egress host, and per frontend the
	// entries by reply source (endpoint).
	flows := func() (egressFlows int, byFront map[netip.AddrPort]map[netip.AddrPort]int) {
		cr, err := conntrack.NewCreator(l.node.FD())
		if err != nil {
			t.Fatal(err)
		}
		defer cr.Close()
		all, err := cr.Dump(conntrack.Query{Family: 2})
		if err != nil {
			t.Fatal(err)
		}
		byFront = map[netip.AddrPort]map[netip.AddrPort]int{clusterIP: {}, nodePort: {}}
		for _, f := range all {
			switch {
			case f.OrigDst == extHost:
				egressFlows++
			case byFront[f.OrigDst] != nil:
				byFront[f.OrigDst][f.ReplySrc]++
			}
		}
		return egressFlows, byFront
	}
	pod0, pod1 := netip.AddrPortFrom(podAddr(0), 5353), netip.AddrPortFrom(podAddr(1), 5353)
	n, by := flows()
	if n != 1 || by[clusterIP][pod0] == 0 || by[clusterIP][pod1] == 0 || by[nodePort][pod0] == 0 || by[nodePort][pod1] == 0 {
		t.Fatalf("before: egress flows %d, flows by frontend %v", n, by)
	}
	toPod0 := by[clusterIP][pod0] + by[nodePort][pod0]

	l.deleted = 0
	l.program(dnsState(1), true) // pod0 is no longer an endpoint
	n, by = flows()
	if n != 1 {
		t.Errorf("the masqueraded egress flow to %v (port of NodePort 30053) was deleted", extHost)
	}
	for _, front := range []netip.AddrPort{clusterIP, nodePort} {
		if by[front][pod0] > 0 {
			t.Errorf("the flow through %v to the removed endpoint %v survived", front, pod0)
		}
		if by[front][pod1] == 0 {
			t.Errorf("the flow through %v to the remaining endpoint %v was deleted", front, pod1)
		}
	}
	if l.deleted != toPod0 {
		t.Errorf("deleted %d entries, want %d (the sockets that reached pod0 through the ClusterIP and the NodePort)", l.deleted, toPod0)
	}
	for _, front := range []netip.AddrPort{clusterIP, nodePort} {
		if got := ask(t, pinned[front]["pod0"]); got != "pod1" {
			t.Errorf("the client pinned to pod0 through %v now reaches %q, want pod1", front, got)
		}
		if got := ask(t, pinned[front]["pod1"]); got != "pod1" {
			t.Errorf("the client pinned to pod1 through %v now reaches %q", front, got)
		}
	}
	if got := ask(t, egress); got != "ext" {
		t.Errorf("egress flow now reaches %q", got)
	}
}

// TestKernelFlowsOlderThanTheServiceAreDeleted: a client that sent to a
// ClusterIP and a NodePort before the Service had rules holds entries that
// were never DNATed, and would keep them (and get no answer) for as long
// as it keeps sending. The first cleanup after the Service's rules (and
// first endpoint) arrive deletes them, as upstream does.
func TestKernelFlowsOlderThanTheServiceAreDeleted(t *testing.T) {
	netkit.RequireRoot(t)
	l := newLab(t)
	none := &model.State{NodeIPs: []netip.Addr{nodeIP}, NodePortIPs: []netip.Addr{nodeIP}}
	l.program(none, true)
	conns := map[netip.AddrPort]*net.UDPConn{}
	for _, front := range []netip.AddrPort{clusterIP, nodePort} {
		conns[front] = dial(t, l.client, front)
		if got := ask(t, conns[front]); got != "no answer" {
			t.Fatalf("%v answered %q before the Service existed", front, got)
		}
	}
	l.program(dnsState(0), false)
	for front, c := range conns {
		if got := ask(t, c); got != "no answer" {
			t.Fatalf("control: the entry to %v from before the rules should keep the client from the Service, got %q", front, got)
		}
	}
	l.cleaner.Programmed(conntrack.NewIndex(dnsState(0)))
	l.cleaner.Wait()
	for front, c := range conns {
		if got := ask(t, c); got != "pod0" {
			t.Errorf("after cleanup the client of %v reached %q, want pod0", front, got)
		}
	}
}

// topology: client (192.168.60.2) ── node (192.168.60.1) ── pod0, pod1
// (10.244.2.10, .11, routed /32 behind the node).
func topology(t *testing.T) (node, client *netkit.NS, pods []*netkit.NS) {
	t.Helper()
	const prefix = "nftk-ct-"
	_ = netkit.CleanupPrefix(prefix)
	mk := func(role string) *netkit.NS {
		ns, err := netkit.New(prefix + role)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ns.Delete() })
		return ns
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	node, client = mk("node"), mk("client")
	must(node.EnableForwarding())
	must(netkit.Link(node, "eth0", []netip.Prefix{netip.PrefixFrom(nodeIP, 24)},
		client, "eth0", []netip.Prefix{netip.MustParsePrefix("192.168.60.2/24")}))
	must(client.AddDefaultRoute(nodeIP))
	must(node.AddDefaultRoute(netip.MustParseAddr("192.168.60.2")))
	gw := netip.MustParseAddr("10.244.2.1")
	for i := 0; i < 2; i++ {
		pod := mk(fmt.Sprintf("pod%d", i))
		must(netkit.ConnectRoutedPod(node, fmt.Sprintf("veth%d", i), pod, []netip.Addr{podAddr(i)}, []netip.Addr{gw}))
		pods = append(pods, pod)
	}
	return node, client, pods
}

func podAddr(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 244, 2, byte(10 + i)}) }
