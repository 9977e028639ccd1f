package lab

import (
	"fmt"
	"net/netip"

	"github.com/nftproxy/nftproxy/e2e/netkit"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Interface names used inside the lab.
const (
	underlayBridge = "br-underlay" // in the underlay namespace
	uplinkIf       = "eth0"        // a node's / client's / control plane's underlay link
	podBridge      = "cni0"        // a node's pod bridge
	vxlanIf        = "vxlan0"      // a node's VXLAN device (VXLAN mode)
)

// Node is one lab node: a namespace playing the node's host network.
type Node struct {
	Name  string // Kubernetes node name, e.g. node-1
	Index int    // 1-based
	Zone  string
	NS    *netkit.NS
	IPv4  netip.Addr // InternalIP addresses on the underlay
	IPv6  netip.Addr
	// PodCIDRv4/v6 are this node's pod CIDRs; PodGWv4/v6 the pod bridge's
	// addresses (pods' default gateways).
	PodCIDRv4, PodCIDRv6 netip.Prefix
	PodGWv4, PodGWv6     netip.Addr

	proxy     *proxyProc
	nextPod   int          // next pod address offset to try
	usedPods  map[int]bool // pod address offsets in use
	nextVethN int          // veth names are never reused (deletion is async)
}

// buildUnderlay creates the underlay namespace and its bridge. The bridge
// gets the first underlay addresses so that it is every lab namespace's
// default gateway: forwarding stays off there, so a packet that no rule
// catches (e.g. to an unhandled ClusterIP) dies inside the lab.
func (l *Lab) buildUnderlay() error {
	ns, err := l.newNS("underlay")
	if err != nil {
		return err
	}
	l.underlay = ns
	if err := ns.Bridge(underlayBridge); err != nil {
		return fmt.Errorf("lab: underlay bridge: %w", err)
	}
	gw := underlayAddr(deadEndHost)
	for _, p := range []netip.Prefix{prefixOn(gw.V4, UnderlayV4), prefixOn(gw.V6, UnderlayV6)} {
		if err := ns.AddAddr(underlayBridge, p); err != nil {
			return fmt.Errorf("lab: underlay address: %w", err)
		}
	}
	return nil
}

// attachUnderlay plugs ns into the underlay bridge as eth0 with the
// underlay addresses of host, and points its default routes at the dead
// end.
func (l *Lab) attachUnderlay(ns *netkit.NS, short string, host int) (pair, error) {
	uname := "u-" + short
	if len(uname) > 15 {
		return pair{}, fmt.Errorf("lab: interface name %q too long", uname)
	}
	if err := netkit.Veth(l.underlay, uname, ns, uplinkIf); err != nil {
		return pair{}, fmt.Errorf("lab: underlay link for %s: %w", ns.Name, err)
	}
	if err := l.underlay.SetMaster(uname, underlayBridge); err != nil {
		return pair{}, fmt.Errorf("lab: underlay port for %s: %w", ns.Name, err)
	}
	a := underlayAddr(host)
	gw := underlayAddr(deadEndHost)
	if err := ns.AddAddr(uplinkIf, prefixOn(a.V4, UnderlayV4)); err != nil {
		return pair{}, fmt.Errorf("lab: address of %s: %w", ns.Name, err)
	}
	if err := ns.AddAddr(uplinkIf, prefixOn(a.V6, UnderlayV6)); err != nil {
		return pair{}, fmt.Errorf("lab: address of %s: %w", ns.Name, err)
	}
	if err := ns.AddDefaultRoute(gw.V4); err != nil {
		return pair{}, fmt.Errorf("lab: default route of %s: %w", ns.Name, err)
	}
	if err := ns.AddDefaultRoute(gw.V6); err != nil {
		return pair{}, fmt.Errorf("lab: default route of %s: %w", ns.Name, err)
	}
	return a, nil
}

// buildNode creates node i (1-based) with its pod bridge; cross-node
// routes are added by linkNodes once every node exists.
func (l *Lab) buildNode(i int) (*Node, error) {
	name := nodeName(i)
	ns, err := l.newNS(name)
	if err != nil {
		return nil, err
	}
	a, err := l.attachUnderlay(ns, name, nodeHostBase+i)
	if err != nil {
		return nil, err
	}
	n := &Node{Name: name, Index: i, Zone: zoneOf(i), NS: ns, IPv4: a.V4, IPv6: a.V6,
		usedPods: map[int]bool{}, nextPod: podHostBase}
	n.PodCIDRv4, n.PodCIDRv6 = podCIDRs(i)
	n.PodGWv4, n.PodGWv6 = nth(n.PodCIDRv4, 1), nth(n.PodCIDRv6, 1)
	if err := ns.EnableForwarding(); err != nil {
		return nil, fmt.Errorf("lab: forwarding on %s: %w", name, err)
	}
	if err := ns.Bridge(podBridge); err != nil {
		return nil, fmt.Errorf("lab: pod bridge on %s: %w", name, err)
	}
	for _, p := range []netip.Prefix{prefixOn(n.PodGWv4, n.PodCIDRv4), prefixOn(n.PodGWv6, n.PodCIDRv6)} {
		if err := ns.AddAddr(podBridge, p); err != nil {
			return nil, fmt.Errorf("lab: pod bridge address on %s: %w", name, err)
		}
	}
	return n, nil
}

// linkNodes gives every node a path to every other node's pod CIDRs.
func (l *Lab) linkNodes() error {
	for _, n := range l.nodes {
		if l.opts.Mode == VXLAN {
			if err := l.setupVXLAN(n); err != nil {
				return err
			}
			continue
		}
		for _, m := range l.nodes {
			if m == n {
				continue
			}
			if err := n.NS.AddRoute(m.PodCIDRv4, m.IPv4); err != nil {
				return fmt.Errorf("lab: route %s -> %s pods: %w", n.Name, m.Name, err)
			}
			if err := n.NS.AddRoute(m.PodCIDRv6, m.IPv6); err != nil {
				return fmt.Errorf("lab: route %s -> %s pods: %w", n.Name, m.Name, err)
			}
		}
	}
	return nil
}

// withNetlink runs fn with a netlink handle inside ns (for what netkit
// does not offer: VXLAN devices, FDB and neighbour entries, link deletion).
func withNetlink(ns *netkit.NS, fn func(h *netlink.Handle) error) error {
	h, err := netlink.NewHandleAt(netns.NsHandle(ns.FD()))
	if err != nil {
		return fmt.Errorf("lab: netlink handle in %s: %w", ns.Name, err)
	}
	defer h.Close()
	return fn(h)
}
