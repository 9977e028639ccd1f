package lab

import (
	"fmt"
	"net/netip"
)

// The address plan. Every address is private and only exists inside lab
// namespaces; the underlay is a bridge with no uplink, so these ranges
// never meet the host's networks.
var (
	UnderlayV4 = netip.MustParsePrefix("10.90.0.0/24")
	UnderlayV6 = netip.MustParsePrefix("fd90::/64")
	// ClusterCIDRs hold every pod CIDR (nftproxy's --cluster-cidr).
	ClusterCIDRV4 = netip.MustParsePrefix("10.244.0.0/16")
	ClusterCIDRV6 = netip.MustParsePrefix("fd44::/48")
	// Service CIDRs of the apiserver (ClusterIPs come from here).
	ServiceCIDRV4 = netip.MustParsePrefix("10.96.0.0/16")
	ServiceCIDRV6 = netip.MustParsePrefix("fd96::/112")
)

// Fixed hosts on the underlay (offsets into the underlay prefixes).
const (
	deadEndHost  = 1   // the underlay bridge itself: default gateway that routes nowhere
	cpHost       = 2   // control plane
	nodeHostBase = 10  // node i (1-based) is nodeHostBase+i
	extHostBase  = 200 // external client i (1-based) is extHostBase+i-1
	podHostBase  = 10  // pod j (0-based) on a node is podHostBase+j
)

// APIServerPort is kube-apiserver's secure port on the control-plane IPs.
const APIServerPort = 6443

// nth returns the address at offset n inside prefix p.
func nth(p netip.Prefix, n int) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := len(b) - 1; i >= 0 && n > 0; i-- {
		s := int(b[i]) + n
		b[i] = byte(s)
		n = s >> 8
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// pair is one address per family.
type pair struct{ V4, V6 netip.Addr }

func underlayAddr(host int) pair {
	return pair{nth(UnderlayV4, host), nth(UnderlayV6, host)}
}

// prefixOn returns addr with the length of prefix p (an interface address).
func prefixOn(a netip.Addr, p netip.Prefix) netip.Prefix {
	return netip.PrefixFrom(a, p.Bits())
}

// podCIDRs of node i (1-based): 10.244.i.0/24 and fd44:0:0:i::/64.
func podCIDRs(i int) (netip.Prefix, netip.Prefix) {
	v4 := netip.PrefixFrom(nth(ClusterCIDRV4, i<<8), 24)
	v6b := ClusterCIDRV6.Addr().As16()
	v6b[6], v6b[7] = byte(i>>8), byte(i)
	return v4, netip.PrefixFrom(netip.AddrFrom16(v6b), 64)
}

// vtepAddrs are the VXLAN next hops of node i: 10.244.i.0 (as Flannel uses)
// and fd44:0:ffff::i (outside every pod /64, so no subnet-router anycast
// clash).
func vtepAddrs(i int) pair {
	v4, _ := podCIDRs(i)
	v6b := ClusterCIDRV6.Addr().As16()
	v6b[4], v6b[5] = 0xff, 0xff
	v6b[14], v6b[15] = byte(i>>8), byte(i)
	return pair{v4.Addr(), netip.AddrFrom16(v6b)}
}

// vtepMAC is the fixed MAC of node i's vxlan device, so FDB/neighbour
// entries can be written before the remote device exists.
func vtepMAC(i int) string {
	return fmt.Sprintf("02:4e:46:00:%02x:%02x", byte(i>>8), byte(i))
}

// nodeName is the Kubernetes name of node i (1-based).
func nodeName(i int) string { return fmt.Sprintf("node-%d", i) }

// zoneOf spreads nodes over two zones, so topology tests have both.
func zoneOf(i int) string {
	if i%2 == 1 {
		return "zone-a"
	}
	return "zone-b"
}

// APIServerAddress is kube-apiserver's IPv4 address on the lab network
// (the kubernetes Service's endpoint in real-kubelet clusters).
func APIServerAddress() netip.Addr { return underlayAddr(cpHost).V4 }
