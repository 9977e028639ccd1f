package netkit

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

// RoutedNode is the small routed node the kernel tests of nftrules and
// proxier/app build out of network namespaces:
//
//	client (Client[0], Client[1]) ── node (Node[0], Node[1]) ─┬─ pod0 (10.244.1.10, fd44::10)
//	                                                          ├─ pod1 (10.244.1.11, fd44::11)
//	                                                          └─ …
//
// Pods are routed /32 (/128) veths behind the node (RoutedPodGateways on
// every node-side veth); the client sits outside the cluster CIDRs
// 10.244.0.0/16 and fd44::/64. The node's default route points at the
// client, which does not forward: a packet no rule catches dies there.
type RoutedNode struct {
	Node, Client *NS
	Pods         []*NS
	t            testing.TB
	prefix, id   string
}

// RoutedNodeAddrs are a RoutedNode's addresses on the node-client link
// (IPv4 in a /24, IPv6 in a /64).
type RoutedNodeAddrs struct {
	Node, Client [2]netip.Addr
}

// RoutedPodGateways are the node-side addresses of every pod veth.
var RoutedPodGateways = []netip.Addr{netip.MustParseAddr("10.244.1.1"), netip.MustParseAddr("fd44::1")}

// RoutedPodAddrs returns the IPv4 and IPv6 address of pod i.
func RoutedPodAddrs(i int) []netip.Addr {
	return []netip.Addr{
		netip.MustParseAddr(fmt.Sprintf("10.244.1.%d", 10+i)),
		netip.MustParseAddr(fmt.Sprintf("fd44::%d", 10+i)),
	}
}

// NewRoutedNode builds a RoutedNode with pods pods for t, after
// RequireRoot; its namespaces are named prefix + the end of t's name +
// "-" + role, and are removed when t ends (unless KEEP is set, to look at
// them after a failure).
func NewRoutedNode(t testing.TB, prefix string, addrs RoutedNodeAddrs, pods int) *RoutedNode {
	t.Helper()
	RequireRoot(t)
	id := strings.NewReplacer("/", "-", "_", "").Replace(t.Name())
	if len(id) > 12 {
		id = id[len(id)-12:]
	}
	n := &RoutedNode{t: t, prefix: prefix, id: id}
	n.Node, n.Client = n.NewNS("node"), n.NewNS("client")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(n.Node.EnableForwarding())
	must(Link(n.Node, "eth0", []netip.Prefix{netip.PrefixFrom(addrs.Node[0], 24), netip.PrefixFrom(addrs.Node[1], 64)},
		n.Client, "eth0", []netip.Prefix{netip.PrefixFrom(addrs.Client[0], 24), netip.PrefixFrom(addrs.Client[1], 64)}))
	for _, a := range addrs.Node {
		must(n.Client.AddDefaultRoute(a))
	}
	for _, a := range addrs.Client {
		must(n.Node.AddDefaultRoute(a))
	}
	for i := 0; i < pods; i++ {
		pod := n.NewNS(fmt.Sprintf("pod%d", i))
		must(ConnectRoutedPod(n.Node, fmt.Sprintf("veth%d", i), pod, RoutedPodAddrs(i), RoutedPodGateways))
		n.Pods = append(n.Pods, pod)
	}
	return n
}

// NewNS creates another namespace of the node's test (see NewRoutedNode).
func (n *RoutedNode) NewNS(role string) *NS {
	n.t.Helper()
	return newTestNS(n.t, n.prefix+n.id+"-"+role)
}

// ServeEcho starts TCP and UDP servers on port on both addresses of every
// pod, answering "podN <client address>"; they stop when the test ends.
func (n *RoutedNode) ServeEcho(port uint16) {
	n.t.Helper()
	for i, pod := range n.Pods {
		name := fmt.Sprintf("pod%d", i)
		reply := func(remote netip.AddrPort) string { return name + " " + remote.Addr().Unmap().String() }
		for _, a := range RoutedPodAddrs(i) {
			ap := netip.AddrPortFrom(a, port)
			c, err := pod.ServeTCP(ap, reply)
			if err != nil {
				n.t.Fatal(err)
			}
			n.t.Cleanup(func() { c.Close() })
			u, err := pod.ServeUDP(ap, reply)
			if err != nil {
				n.t.Fatal(err)
			}
			n.t.Cleanup(func() { u.Close() })
		}
	}
}
