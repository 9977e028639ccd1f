package nftrules_test

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/nftproxy/nftproxy/e2e/netkit"
)

// The kernel tests build a small routed "node" out of network namespaces:
//
//	client (192.168.50.2, fd50::2) ── node (192.168.50.1, fd50::1) ─┬─ pod0 (10.244.1.10, fd44::10)
//	                                                                 ├─ pod1 (10.244.1.11, fd44::11)
//	                                                                 └─ pod2 (10.244.1.12, fd44::12)
//
// Pods are routed /32 (/128) veths behind the node (gateway 10.244.1.1 /
// fd44::1 on every node-side veth). The client sits outside the cluster
// CIDR 10.244.0.0/16 / fd44::/64. The node's default route points at the
// client, which does not forward: a packet no rule catches dies in the lab.
const nsPrefix = "nftk-"

var (
	clusterCIDRs = []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("fd44::/64")}
	nodeAddr4    = netip.MustParseAddr("192.168.50.1")
	nodeAddr6    = netip.MustParseAddr("fd50::1")
	clientAddr4  = netip.MustParseAddr("192.168.50.2")
	clientAddr6  = netip.MustParseAddr("fd50::2")
	podGW4       = netip.MustParseAddr("10.244.1.1")
	podGW6       = netip.MustParseAddr("fd44::1")
)

func podAddr4(i int) netip.Addr { return netip.MustParseAddr(fmt.Sprintf("10.244.1.%d", 10+i)) }
func podAddr6(i int) netip.Addr { return netip.MustParseAddr(fmt.Sprintf("fd44::%d", 10+i)) }

type testNode struct {
	node, client *netkit.NS
	pods         []*netkit.NS
	// client2 exists after addSecondClient.
	client2 *netkit.NS
	mk      func(role string) *netkit.NS
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
	c := tn.mk("client2")
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

func requireRoot(t testing.TB) {
	t.Helper()
	netkit.RequireRoot(t)
}

// newTestNode builds the topology above with n pods; everything is removed
// when the test ends.
func newTestNode(t testing.TB, pods int) *testNode {
	t.Helper()
	requireRoot(t)
	id := strings.NewReplacer("/", "-", "_", "").Replace(t.Name())
	if len(id) > 12 {
		id = id[len(id)-12:]
	}
	mk := func(role string) *netkit.NS {
		name := nsPrefix + id + "-" + role
		_ = netkit.CleanupPrefix(name)
		ns, err := netkit.New(name)
		if err != nil {
			t.Fatalf("create namespace %s: %v", name, err)
		}
		if os.Getenv("KEEP") == "" {
			t.Cleanup(func() { _ = ns.Delete() })
		}
		return ns
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	tn := &testNode{node: mk("node"), client: mk("client"), mk: mk}
	must(tn.node.EnableForwarding())
	must(netkit.Link(tn.node, "eth0", []netip.Prefix{netip.PrefixFrom(nodeAddr4, 24), netip.PrefixFrom(nodeAddr6, 64)},
		tn.client, "eth0", []netip.Prefix{netip.PrefixFrom(clientAddr4, 24), netip.PrefixFrom(clientAddr6, 64)}))
	must(tn.client.AddDefaultRoute(nodeAddr4))
	must(tn.client.AddDefaultRoute(nodeAddr6))
	must(tn.node.AddDefaultRoute(clientAddr4))
	must(tn.node.AddDefaultRoute(clientAddr6))
	for i := 0; i < pods; i++ {
		pod := mk(fmt.Sprintf("pod%d", i))
		must(netkit.ConnectRoutedPod(tn.node, fmt.Sprintf("veth%d", i), pod,
			[]netip.Addr{podAddr4(i), podAddr6(i)}, []netip.Addr{podGW4, podGW6}))
		tn.pods = append(tn.pods, pod)
	}
	return tn
}

// nftList returns `nft list ruleset` of a namespace.
func nftList(t testing.TB, ns *netkit.NS) string {
	t.Helper()
	out, err := ns.Exec("nft", "list", "ruleset")
	if err != nil {
		t.Fatalf("nft list ruleset in %s: %v\n%s", ns.Name, err, out)
	}
	return string(out)
}
