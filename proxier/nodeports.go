package proxier

import (
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"

	"github.com/nftproxy/nftproxy/proxier/endpoints"
	"github.com/nftproxy/nftproxy/proxier/healthcheck"
	"github.com/nftproxy/nftproxy/proxier/model"
)

// NodePortAddresses is --nodeport-addresses: which of this node's
// addresses NodePorts are served on.
type NodePortAddresses struct {
	// Primary selects the node's primary addresses (its Node's InternalIPs,
	// as the proxier reads them).
	Primary bool
	// CIDRs select the node's interface addresses inside them.
	CIDRs []netip.Prefix
}

// ParseNodePortAddresses parses "primary", a comma-separated list of CIDRs,
// or both ("primary,127.0.0.0/8"). Empty means "primary", the default of
// upstream's nftables mode. "0.0.0.0/0,::/0" selects every address.
func ParseNodePortAddresses(s string) (NodePortAddresses, error) {
	var a NodePortAddresses
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		switch {
		case part == "":
		case strings.EqualFold(part, "primary"):
			a.Primary = true
		default:
			p, err := netip.ParsePrefix(part)
			if err != nil {
				return a, fmt.Errorf("--nodeport-addresses: %q is neither \"primary\" nor a CIDR: %w", part, err)
			}
			if p.Addr().Is4In6() {
				return a, fmt.Errorf("--nodeport-addresses: IPv4-mapped CIDR %q is not allowed", part)
			}
			a.CIDRs = append(a.CIDRs, p.Masked())
		}
	}
	if !a.Primary && len(a.CIDRs) == 0 {
		a.Primary = true
	}
	return a, nil
}

// NeedsRouteLocalnet reports whether an IPv4 loopback address may be a
// NodePort address: localhost NodePorts then need
// net.ipv4.conf.all.route_localnet=1 (a packet from 127.0.0.1 may not
// otherwise be routed out to a pod after DNAT).
func (a NodePortAddresses) NeedsRouteLocalnet() bool {
	loopback := netip.MustParsePrefix("127.0.0.0/8")
	for _, p := range a.CIDRs {
		if p.Overlaps(loopback) {
			return true
		}
	}
	return false
}

// Select returns the NodePort addresses among the node's primary addresses
// and its interface addresses, sorted and de-duplicated.
func (a NodePortAddresses) Select(nodeIPs, local []netip.Addr) []netip.Addr {
	var out []netip.Addr
	if a.Primary {
		out = append(out, nodeIPs...)
	}
	for _, ip := range local {
		ip = ip.Unmap()
		if ip.Is6() && ip.IsLinkLocalUnicast() {
			continue // needs a zone; never a Service address
		}
		for _, p := range a.CIDRs {
			if p.Contains(ip) {
				out = append(out, ip)
				break
			}
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}

// InterfaceAddrs lists the addresses of the host's interfaces.
func InterfaceAddrs() ([]netip.Addr, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				out = append(out, ip.Unmap())
			}
		}
	}
	return out, nil
}

// refreshNodePortIPs recomputes the NodePort addresses from the Node's
// addresses and, when CIDRs are configured, the interfaces' (read at every
// sync, so a new address is served by the next periodic sync at the
// latest).
func (p *Proxier) refreshNodePortIPs() {
	a := p.cfg.NodePortAddresses
	var local []netip.Addr
	if len(a.CIDRs) > 0 {
		list := p.cfg.LocalAddrs
		if list == nil {
			list = InterfaceAddrs
		}
		var err error
		if local, err = list(); err != nil {
			klog.ErrorS(err, "Cannot list the node's addresses; keeping the previous NodePort addresses")
			return
		}
	}
	ips := a.Select(p.nodeIPs, local)
	if slices.Equal(ips, p.nodePortIPs) {
		return
	}
	klog.V(2).InfoS("NodePort addresses changed", "addresses", ips)
	p.nodePortIPs = ips
	p.dirty = true
}

// syncHealthChecks tells the health check server the health check node
// ports of st, the addresses to serve them on (the NodePort addresses) and
// their ready local endpoints (distinct addresses over the Service's
// ports, as upstream counts them). It keeps the service ports with a
// health check node port per Service: given st.Delta from the State it saw
// last, it looks at the changed Services only, not at every service port.
func (p *Proxier) syncHealthChecks(st *model.State) {
	if p.cfg.HealthChecks == nil {
		return
	}
	withCheck := func(ports []*model.ServicePort) []*model.ServicePort {
		return slices.DeleteFunc(slices.Clone(ports), func(sp *model.ServicePort) bool { return sp.HealthCheckNodePort == 0 })
	}
	if st.Delta != nil && p.hcSeen != 0 && st.Delta.Since == p.hcSeen {
		for _, k := range st.Delta.Changed {
			if ports := withCheck(st.PortsOf(k)); len(ports) > 0 {
				p.hcPorts[k] = ports
			} else {
				delete(p.hcPorts, k)
			}
		}
	} else {
		p.hcPorts = map[types.NamespacedName][]*model.ServicePort{}
		for _, sp := range withCheck(slices.Collect(st.All())) {
			k := sp.Name.NamespacedName
			p.hcPorts[k] = append(p.hcPorts[k], sp)
		}
	}
	p.hcSeen = st.Gen
	var out []healthcheck.Service
	for _, k := range slices.SortedFunc(maps.Keys(p.hcPorts), model.CompareServices) {
		ports := p.hcPorts[k]
		out = append(out, healthcheck.Service{Name: k, Port: ports[0].HealthCheckNodePort,
			LocalEndpoints: endpoints.LocalReady(st.NodeName, ports)})
	}
	p.cfg.HealthChecks.Sync(st.NodePortIPs, out)
}
