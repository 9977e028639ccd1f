package conntrack

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/nftproxy/nftproxy/nftrules"
	"github.com/nftproxy/nftproxy/nftrules/nft"
	"github.com/nftproxy/nftproxy/nftrules/trace"
	"github.com/nftproxy/nftproxy/proxier/model"
)

// TestLiveEndpointsAreWhatTheRulesetDNATsTo checks that cleanup's idea of
// the endpoints a UDP Service still has is the ruleset's: for each case,
// first packets are traced through the ruleset built from the same State
// (to every frontend, from a pod, from an outside client and from the node
// itself), and the DNAT targets seen must be exactly the live set of the
// Index; no frontend may reach an endpoint the Index calls stale.
func TestLiveEndpointsAreWhatTheRulesetDNATsTo(t *testing.T) {
	const node, zone = "node-a", "zone-a"
	local := func(ep model.Endpoint) model.Endpoint { ep.NodeName = node; return ep }
	hinted := func(ep model.Endpoint, z string) model.Endpoint {
		ep.Hints = &model.Hints{Zones: []string{z}}
		return ep
	}
	terminating := func(ep model.Endpoint) model.Endpoint {
		ep.Ready, ep.Serving, ep.Terminating = false, true, true
		return ep
	}
	notServing := func(ep model.Endpoint) model.Endpoint { ep.Ready, ep.Serving = false, false; return ep }
	e1, e2, e3 := ready("10.244.1.2", 53), ready("10.244.2.2", 53), ready("10.244.3.2", 53)
	e6 := ready("fd00:244::2", 53)

	cases := []struct {
		name string
		sp   func(sp *model.ServicePort)
	}{
		{"ready endpoints", func(sp *model.ServicePort) { sp.Endpoints = []model.Endpoint{e1, e2} }},
		{"ready, terminating and not serving: the ready one only", func(sp *model.ServicePort) {
			sp.Endpoints = []model.Endpoint{e1, terminating(e2), notServing(e3)}
		}},
		{"no ready endpoint: the serving terminating ones", func(sp *model.ServicePort) {
			sp.Endpoints = []model.Endpoint{terminating(e1), terminating(e2), notServing(e3)}
		}},
		{"zone hints: this zone's endpoints only", func(sp *model.ServicePort) {
			sp.Endpoints = []model.Endpoint{hinted(e1, zone), hinted(e2, "zone-b"), hinted(e3, zone)}
		}},
		{"internalTrafficPolicy Local, no external exposure: local endpoints only", func(sp *model.ServicePort) {
			sp.NodePort, sp.ExternalIPs, sp.LoadBalancerIPs = 0, nil, nil
			sp.InternalPolicyLocal = true
			sp.Endpoints = []model.Endpoint{local(e1), e2}
		}},
		{"externalTrafficPolicy Local: all for internal traffic, local for external", func(sp *model.ServicePort) {
			sp.ExternalPolicyLocal = true
			sp.Endpoints = []model.Endpoint{local(e1), e2, e3}
		}},
		{"session affinity", func(sp *model.ServicePort) {
			sp.SessionAffinityClientIP = true
			sp.Endpoints = []model.Endpoint{e1, terminating(e2)}
		}},
		{"dual-stack", func(sp *model.ServicePort) {
			sp.ClusterIPs = append(sp.ClusterIPs, addr("fd00:96::10"))
			sp.Endpoints = []model.Endpoint{e1, e6}
		}},
		{"no usable endpoint: rejected, nothing live", func(sp *model.ServicePort) {
			sp.Endpoints = []model.Endpoint{notServing(e1)}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sp := dnsPort()
			sp.ID = 1
			sp.Name.Name, sp.Name.Namespace, sp.Name.Protocol = "dns", "kube-system", "UDP"
			tc.sp(sp)
			st := &model.State{NodeName: node, NodeZone: zone,
				ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("fd00:244::/48")},
				NodePortIPs:  []netip.Addr{addr("192.168.50.1"), addr("fd00:50::1")},
				Services:     []*model.ServicePort{sp}}
			rs := nftrules.NewBuilder().Build(st)
			ix := NewIndex(st)

			var frontends []netip.AddrPort
			for dst := range ix.frontends {
				frontends = append(frontends, dst)
			}
			forEachNodePort(ix, func(dst netip.AddrPort, _ liveSet) { frontends = append(frontends, dst) })
			if len(frontends) == 0 {
				t.Fatal("no frontend indexed")
			}
			seen := map[netip.AddrPort]bool{}
			for _, dst := range frontends {
				live, _ := ix.lookup(dst)
				for _, p := range packetsTo(dst, st) {
					r, err := trace.Trace(rs, p)
					if err != nil {
						t.Fatalf("trace %v: %v", p, err)
					}
					for _, to := range r.Targets {
						seen[to] = true
						if _, ok := live[to]; !ok {
							t.Errorf("%v is DNATed to %v, which cleanup would call stale", p, to)
						}
					}
				}
			}
			var want, got []string
			for to := range seen {
				got = append(got, to.String())
			}
			live, _ := ix.lookup(netip.AddrPortFrom(sp.ClusterIPs[0], sp.Port))
			want = keys(live)
			slices.Sort(got)
			if len(got) == 0 && len(sp.Endpoints) > 0 && sp.Endpoints[0].Serving {
				t.Error("no DNAT target traced: the case tests nothing")
			}
			if !slices.Equal(got, want) {
				t.Errorf("the ruleset DNATs to %v; cleanup keeps flows to %v", got, want)
			}
		})
	}
}

// packetsTo returns first packets to dst from a pod, an outside client and
// the node itself (to a NodePort address: arriving for the node).
func packetsTo(dst netip.AddrPort, st *model.State) []trace.Packet {
	pod, client, self := addr("10.244.0.9"), addr("203.0.113.9"), addr("192.168.50.1")
	if dst.Addr().Is6() {
		pod, client, self = addr("fd00:244::9"), addr("2001:db8::9"), addr("fd00:50::1")
	}
	path := trace.Forwarded
	if slices.Contains(st.NodePortIPs, dst.Addr()) {
		path = trace.ToLocal
	}
	p := func(src netip.Addr, path trace.Path) trace.Packet {
		return trace.Packet{Src: src, Dst: dst.Addr(), Proto: nft.UDP, DstPort: dst.Port(), Path: path}
	}
	return []trace.Packet{p(pod, path), p(client, path), p(self, trace.LocalOut)}
}
