package lab

import (
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"github.com/vishvananda/netlink"
)

// vxlanPort and vxlanVNI are Flannel's defaults.
const (
	vxlanPort = 8472
	vxlanVNI  = 1
)

// setupVXLAN gives node n a vxlan device over its IPv4 underlay address
// and, for every other node m, Flannel's static entries:
//
//	route  m.podCIDR via m.vtep dev vxlan0 onlink
//	neigh  m.vtep lladdr m.mac dev vxlan0 permanent
//	fdb    m.mac dev vxlan0 dst m.IPv4 self permanent
//
// Both families' pod traffic is encapsulated in the same IPv4 tunnel.
// Learning is off, so only these entries steer traffic (as with Flannel).
func (l *Lab) setupVXLAN(n *Node) error {
	return withNetlink(n.NS, func(h *netlink.Handle) error {
		up, err := h.LinkByName(uplinkIf)
		if err != nil {
			return fmt.Errorf("lab: %s: find %s: %w", n.Name, uplinkIf, err)
		}
		mac, _ := net.ParseMAC(vtepMAC(n.Index))
		vx := &netlink.Vxlan{
			LinkAttrs:    netlink.LinkAttrs{Name: vxlanIf, HardwareAddr: mac, MTU: 1450},
			VxlanId:      vxlanVNI,
			VtepDevIndex: up.Attrs().Index,
			SrcAddr:      n.IPv4.AsSlice(),
			Port:         vxlanPort,
			Learning:     false,
		}
		if err := h.LinkAdd(vx); err != nil {
			return fmt.Errorf("lab: %s: add vxlan: %w", n.Name, err)
		}
		link, err := h.LinkByName(vxlanIf)
		if err != nil {
			return fmt.Errorf("lab: %s: find vxlan: %w", n.Name, err)
		}
		idx := link.Attrs().Index
		own := vtepAddrs(n.Index)
		for _, a := range []netip.Addr{own.V4, own.V6} {
			addr := &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(a.BitLen(), a.BitLen())}}
			if a.Is6() {
				addr.Flags = syscall.IFA_F_NODAD
			}
			if err := h.AddrAdd(link, addr); err != nil {
				return fmt.Errorf("lab: %s: vxlan address %s: %w", n.Name, a, err)
			}
		}
		if err := h.LinkSetUp(link); err != nil {
			return fmt.Errorf("lab: %s: vxlan up: %w", n.Name, err)
		}
		for _, m := range l.nodes {
			if m == n {
				continue
			}
			if err := addVTEPPeer(h, idx, m); err != nil {
				return fmt.Errorf("lab: %s: vxlan peer %s: %w", n.Name, m.Name, err)
			}
		}
		return nil
	})
}

func addVTEPPeer(h *netlink.Handle, idx int, m *Node) error {
	mac, _ := net.ParseMAC(vtepMAC(m.Index))
	fdb := &netlink.Neigh{
		LinkIndex: idx, Family: syscall.AF_BRIDGE, State: netlink.NUD_PERMANENT,
		Flags: netlink.NTF_SELF, IP: m.IPv4.AsSlice(), HardwareAddr: mac,
	}
	if err := h.NeighAppend(fdb); err != nil {
		return fmt.Errorf("fdb: %w", err)
	}
	vtep := vtepAddrs(m.Index)
	for _, c := range []struct {
		gw  netip.Addr
		dst netip.Prefix
		fam int
	}{{vtep.V4, m.PodCIDRv4, syscall.AF_INET}, {vtep.V6, m.PodCIDRv6, syscall.AF_INET6}} {
		nb := &netlink.Neigh{LinkIndex: idx, Family: c.fam, State: netlink.NUD_PERMANENT,
			IP: c.gw.AsSlice(), HardwareAddr: mac}
		if err := h.NeighSet(nb); err != nil {
			return fmt.Errorf("neighbour %s: %w", c.gw, err)
		}
		r := &netlink.Route{LinkIndex: idx, Gw: c.gw.AsSlice(), Flags: int(netlink.FLAG_ONLINK),
			Dst: &net.IPNet{IP: c.dst.Addr().AsSlice(), Mask: net.CIDRMask(c.dst.Bits(), c.dst.Addr().BitLen())}}
		if err := h.RouteAdd(r); err != nil {
			return fmt.Errorf("route %s: %w", c.dst, err)
		}
	}
	// The IPv6 VTEP address lies outside the peer's pod /64, so it needs a
	// route of its own: traffic masqueraded out of vxlan0 carries it as
	// source, and replies must find their way back.
	r := &netlink.Route{LinkIndex: idx, Scope: netlink.SCOPE_LINK,
		Dst: &net.IPNet{IP: vtep.V6.AsSlice(), Mask: net.CIDRMask(128, 128)}}
	if err := h.RouteAdd(r); err != nil {
		return fmt.Errorf("route to VTEP %s: %w", vtep.V6, err)
	}
	return nil
}
