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
	"github.com/nftproxy/nftproxy/proxier/conntrack"
	"github.com/nftproxy/nftproxy/proxier/model"
)

// TestKernelUDPClientMovesToNewBackend is upstream's "should be able to
// preserve UDP traffic when server pod cycles" on one node: a UDP client
// keeps sending from one socket; the Service's only endpoint is replaced;
// without cleanup the client stays stuck on the old backend, with cleanup
// its next datagram reaches the new one.
func TestKernelUDPClientMovesToNewBackend(t *testing.T) {
	netkit.RequireRoot(t)
	node, client, pods := topology(t)
	for i, pod := range pods {
		name := fmt.Sprintf("pod%d", i)
		srv, err := pod.ServeUDP(netip.AddrPortFrom(podAddr(i), 5353), func(netip.AddrPort) string { return name })
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close() })
	}

	service := func(backend int) *model.State {
		sp := &model.ServicePort{ID: 1, Port: 53, Protocol: v1.ProtocolUDP,
			ClusterIPs: []netip.Addr{netip.MustParseAddr("10.96.0.20")},
			Endpoints:  []model.Endpoint{{Addr: podAddr(backend), Port: 5353, Ready: true, Serving: true}}}
		sp.Name.Namespace, sp.Name.Name, sp.Name.Protocol = "test", "dns", v1.ProtocolUDP
		return &model.State{Services: []*model.ServicePort{sp}}
	}
	rec, err := nftrules.NewReconciler(nftrules.Options{NetNSFd: node.FD()})
	if err != nil {
		t.Fatal(err)
	}
	b := nftrules.NewBuilder()
	sync := func(st *model.State) {
		if _, err := rec.Sync(context.Background(), b.Build(st), false); err != nil {
			t.Fatal(err)
		}
	}
	before := service(0)
	sync(before)

	// One client socket, one source port: one conntrack entry.
	var conn *net.UDPConn
	if err := client.Do(func() (err error) {
		conn, err = net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.MustParseAddrPort("10.96.0.20:53")))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ask := func() string {
		buf := make([]byte, 64)
		for i := 0; i < 20; i++ { // 20 × 50 ms: answers within 1 s
			if _, err := conn.Write([]byte("who")); err != nil {
				t.Fatal(err)
			}
			_ = conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			if n, err := conn.Read(buf); err == nil {
				return string(buf[:n])
			}
		}
		return "no answer"
	}
	if got := ask(); got != "pod0" {
		t.Fatalf("before the change the client reached %q, want pod0", got)
	}

	after := service(1)
	sync(after)
	if got := ask(); got != "pod0" {
		t.Fatalf("control: without cleanup the conntrack entry should still lead to pod0, got %q", got)
	}

	cleaner, err := conntrack.NewCleaner(node.FD())
	if err != nil {
		t.Fatal(err)
	}
	defer cleaner.Close()
	n, err := cleaner.Clean(conntrack.NewIndex(after), conntrack.NewIndex(before))
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Error("cleanup deleted no entry")
	}
	if got := ask(); got != "pod1" {
		t.Errorf("after cleanup the client reached %q, want pod1", got)
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
	must(netkit.Link(node, "eth0", []netip.Prefix{netip.MustParsePrefix("192.168.60.1/24")},
		client, "eth0", []netip.Prefix{netip.MustParsePrefix("192.168.60.2/24")}))
	must(client.AddDefaultRoute(netip.MustParseAddr("192.168.60.1")))
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
