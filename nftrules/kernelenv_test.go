package nftrules_test

import (
	"net/netip"
	"testing"

	"github.com/nftproxy/nftproxy/e2e/netkit"
)

// The kernel tests run on a netkit.RoutedNode:
//
//	client (192.168.50.2, fd50::2) ── node (192.168.50.1, fd50::1) ─┬─ pod0 (10.244.1.10, fd44::10)
//	                                                                 ├─ pod1 (10.244.1.11, fd44::11)
//	                                                                 └─ pod2 (10.244.1.12, fd44::12)
const nsPrefix = "nftk-"

var (
	clusterCIDRs = []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("fd44::/64")}
	nodeAddr4    = netip.MustParseAddr("192.168.50.1")
	nodeAddr6    = netip.MustParseAddr("fd50::1")
	clientAddr4  = netip.MustParseAddr("192.168.50.2")
	clientAddr6  = netip.MustParseAddr("fd50::2")
)

func podAddr4(i int) netip.Addr { return netkit.RoutedPodAddrs(i)[0] }
func podAddr6(i int) netip.Addr { return netkit.RoutedPodAddrs(i)[1] }

type testNode struct {
	routed       *netkit.RoutedNode
	node, client *netkit.NS
	pods         []*netkit.NS
	// client2 exists after addSecondClient.
	client2 *netkit.NS
}

// A second client on its own link, for source-range tests:
//
//	client2 (192.168.51.2, fd51::2) ── node eth1 (192.168.51.1, fd51::1)
var (
	node2Addr4   = netip.MustParseAddr("192.168.51.1")
	node2Addr6   = netip.MustParseAddr("fd51::1")
	client2Addr4 = netip.MustParseAddr("192.168.51.2")
	client2Addr6 = netip.MustParseAddr("fd51::2")
)

// addSecondClient adds client2 to the topology.
func (tn *testNode) addSecondClient(t testing.TB) {
	t.Helper()
	c := tn.routed.NewNS("client2")
	for _, err := range []error{
		netkit.Link(tn.node, "eth1", []netip.Prefix{netip.PrefixFrom(node2Addr4, 24), netip.PrefixFrom(node2Addr6, 64)},
			c, "eth0", []netip.Prefix{netip.PrefixFrom(client2Addr4, 24), netip.PrefixFrom(client2Addr6, 64)}),
		c.AddDefaultRoute(node2Addr4),
		c.AddDefaultRoute(node2Addr6),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	tn.client2 = c
}

// newTestNode builds the topology above with n pods; everything is removed
// when the test ends.
func newTestNode(t testing.TB, pods int) *testNode {
	t.Helper()
	n := netkit.NewRoutedNode(t, nsPrefix, netkit.RoutedNodeAddrs{
		Node:   [2]netip.Addr{nodeAddr4, nodeAddr6},
		Client: [2]netip.Addr{clientAddr4, clientAddr6},
	}, pods)
	return &testNode{routed: n, node: n.Node, client: n.Client, pods: n.Pods}
}
