package e2e

import (
	"fmt"
	"net/netip"

	"github.com/nftproxy/nftproxy/e2e/lab"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// nodeAddrs lists every address configured in a node's namespace (what a
// masqueraded packet from that node may carry as source).
func nodeAddrs(l *lab.Lab, node string) (map[netip.Addr]bool, error) {
	ns, err := l.NS(node)
	if err != nil {
		return nil, err
	}
	h, err := netlink.NewHandleAt(netns.NsHandle(ns.FD()))
	if err != nil {
		return nil, fmt.Errorf("netlink in %s: %w", node, err)
	}
	defer h.Close()
	addrs, err := h.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("addresses of %s: %w", node, err)
	}
	out := map[netip.Addr]bool{}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			out[ip.Unmap()] = true
		}
	}
	return out, nil
}
