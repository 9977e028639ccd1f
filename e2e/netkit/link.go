package netkit

import (
	"crypto/sha256"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"github.com/vishvananda/netlink"
)

// Veth creates a veth pair with end aName in namespace a and end bName in
// namespace b (a and b may be the same NS) and brings both ends up. Both
// ends get fast neighbour retransmits (see fastNeigh).
func Veth(a *NS, aName string, b *NS, bName string) error {
	// Work through b's handle so b's fd stays open (b's lock is held)
	// while the kernel moves the peer into it.
	err := b.withHandle(func(hb *netlink.Handle) error {
		add := func(ha *netlink.Handle) error {
			v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: aName}, PeerName: bName}
			if a != b {
				v.PeerNamespace = netlink.NsFd(int(b.handle))
			}
			if err := ha.LinkAdd(v); err != nil {
				return fmt.Errorf("add: %w", err)
			}
			return setUp(ha, aName)
		}
		var err error
		if a == b {
			err = add(hb) // same namespace: do not take its lock twice
		} else {
			err = a.withHandle(add)
		}
		if err != nil {
			return err
		}
		return setUp(hb, bName)
	})
	if err != nil {
		return fmt.Errorf("netkit: veth %s(%s) <-> %s(%s): %w", a.Name, aName, b.Name, bName, err)
	}
	if err := a.fastNeigh(aName); err != nil {
		return err
	}
	return b.fastNeigh(bName)
}

// fastNeigh lowers the ARP/ND retransmit time of ifname from 1 s to
// 100 ms. An IPv6 address's solicited-node multicast group is joined
// asynchronously after AddAddr, so the first neighbour solicitation of a
// test can be lost; without this, that costs the test a whole second.
// (Neighbour "default" sysctls exist only in the root namespace, hence
// per interface.)
func (n *NS) fastNeigh(ifname string) error {
	for _, fam := range []string{"ipv4", "ipv6"} {
		if err := n.Sysctl("net/"+fam+"/neigh/"+ifname+"/retrans_time_ms", "100"); err != nil {
			return err
		}
	}
	return nil
}

func setUp(h *netlink.Handle, ifname string) error {
	l, err := h.LinkByName(ifname)
	if err != nil {
		return fmt.Errorf("find %s: %w", ifname, err)
	}
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("set %s up: %w", ifname, err)
	}
	return nil
}

// Bridge creates a Linux bridge named name and brings it up.
//
// The bridge gets a fixed MAC address, as CNI bridge plugins give it:
// otherwise Linux gives a bridge the lowest MAC of its ports, which changes
// when a port with a lower MAC is plugged in, and IPv6 neighbours (unlike
// IPv4 ones, told by gratuitous ARP) keep sending to the old one.
func (n *NS) Bridge(name string) error {
	sum := sha256.Sum256([]byte(n.Name + "/" + name))
	mac := net.HardwareAddr{0x02, sum[0], sum[1], sum[2], sum[3], sum[4]} // locally administered, unicast
	err := n.withHandle(func(h *netlink.Handle) error {
		if err := h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name, HardwareAddr: mac}}); err != nil {
			return fmt.Errorf("add: %w", err)
		}
		return setUp(h, name)
	})
	if err != nil {
		return fmt.Errorf("netkit: bridge %s in %s: %w", name, n.Name, err)
	}
	return n.fastNeigh(name)
}

// SetMaster enslaves interface ifname to bridge.
func (n *NS) SetMaster(ifname, bridge string) error {
	err := n.withHandle(func(h *netlink.Handle) error {
		l, err := h.LinkByName(ifname)
		if err != nil {
			return err
		}
		br, err := h.LinkByName(bridge)
		if err != nil {
			return err
		}
		return h.LinkSetMaster(l, br)
	})
	if err != nil {
		return fmt.Errorf("netkit: set master of %s to %s in %s: %w", ifname, bridge, n.Name, err)
	}
	return nil
}

// SetHairpin switches hairpin mode of bridge port ifname. With hairpin on,
// the bridge may send a frame back out of the port it came in on, which a
// pod needs to reach itself through a Service (the DNATed packet returns
// to the pod's own port), as kubelet/CNI configure it.
func (n *NS) SetHairpin(ifname string, on bool) error {
	err := n.withHandle(func(h *netlink.Handle) error {
		l, err := h.LinkByName(ifname)
		if err != nil {
			return err
		}
		return h.LinkSetHairpin(l, on)
	})
	if err != nil {
		return fmt.Errorf("netkit: hairpin %v on %s in %s: %w", on, ifname, n.Name, err)
	}
	return nil
}

// AddAddr adds address prefix (e.g. 10.0.0.1/24, fd00::1/64) to ifname.
// IPv6 addresses are added with nodad so they are usable at once.
func (n *NS) AddAddr(ifname string, prefix netip.Prefix) error {
	err := n.withHandle(func(h *netlink.Handle) error {
		l, err := h.LinkByName(ifname)
		if err != nil {
			return err
		}
		a := &netlink.Addr{IPNet: ipNet(prefix)}
		if prefix.Addr().Is6() {
			a.Flags = syscall.IFA_F_NODAD
		}
		return h.AddrAdd(l, a)
	})
	if err != nil {
		return fmt.Errorf("netkit: add address %s to %s in %s: %w", prefix, ifname, n.Name, err)
	}
	return nil
}

// AddRoute adds a route to dst via gateway via. A link-local IPv6 gateway
// must carry its interface as zone (fe80::1%eth0).
func (n *NS) AddRoute(dst netip.Prefix, via netip.Addr) error {
	if dst.Addr().Is4() != via.Unmap().Is4() {
		return fmt.Errorf("netkit: route %s via %s in %s: address families differ", dst, via, n.Name)
	}
	err := n.withHandle(func(h *netlink.Handle) error {
		r := &netlink.Route{Dst: ipNet(dst.Masked()), Gw: net.IP(via.Unmap().AsSlice())}
		if z := via.Zone(); z != "" {
			l, err := h.LinkByName(z)
			if err != nil {
				return err
			}
			r.LinkIndex = l.Attrs().Index
		}
		return h.RouteAdd(r)
	})
	if err != nil {
		return fmt.Errorf("netkit: route %s via %s in %s: %w", dst, via, n.Name, err)
	}
	return nil
}

// AddDefaultRoute adds a default route (0.0.0.0/0 or ::/0, chosen by the
// family of via) via gateway via.
func (n *NS) AddDefaultRoute(via netip.Addr) error {
	via = via.Unmap()
	dst := netip.PrefixFrom(netip.IPv6Unspecified(), 0)
	if via.Is4() {
		dst = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	}
	return n.AddRoute(dst, via)
}

// AddDeviceRoute adds an on-link route (scope link) to dst out of dev,
// i.e. dst is reached directly without a gateway.
func (n *NS) AddDeviceRoute(dst netip.Prefix, dev string) error {
	err := n.withHandle(func(h *netlink.Handle) error {
		l, err := h.LinkByName(dev)
		if err != nil {
			return err
		}
		return h.RouteAdd(&netlink.Route{
			Dst:       ipNet(dst.Masked()),
			LinkIndex: l.Attrs().Index,
			Scope:     netlink.SCOPE_LINK,
		})
	})
	if err != nil {
		return fmt.Errorf("netkit: route %s dev %s in %s: %w", dst, dev, n.Name, err)
	}
	return nil
}

// EnableForwarding turns on IPv4 and IPv6 forwarding inside the namespace
// (making it a router: nodes of the lab forward between pods and underlay).
func (n *NS) EnableForwarding() error {
	if err := n.Sysctl("net.ipv4.ip_forward", "1"); err != nil {
		return err
	}
	return n.Sysctl("net.ipv6.conf.all.forwarding", "1")
}

// ipNet converts a prefix, keeping its host bits (an interface address
// like 10.0.0.1/24 must stay 10.0.0.1, not 10.0.0.0).
func ipNet(p netip.Prefix) *net.IPNet {
	a := p.Addr().Unmap()
	return &net.IPNet{IP: net.IP(a.AsSlice()), Mask: net.CIDRMask(p.Bits(), a.BitLen())}
}
