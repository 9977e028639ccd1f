package nftrules

import (
	"net/netip"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/nftproxy/nftproxy/nftrules/nft"
	"github.com/nftproxy/nftproxy/proxier/model"
)

// TestBuiltRulesKeepTheirText: every rule Build makes, with names and
// addresses at their longest, keeps its text in the kernel (no hash).
func TestBuiltRulesKeepTheirText(t *testing.T) {
	ip := netip.MustParseAddr
	long := "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff"
	sp := &model.ServicePort{
		Name: model.ServicePortName{NamespacedName: types.NamespacedName{Namespace: strings.Repeat("n", 63), Name: strings.Repeat("s", 63)},
			Port: strings.Repeat("p", 15), Protocol: v1.ProtocolSCTP},
		ID: MaxServicePortID, Port: 65535, Protocol: v1.ProtocolSCTP, NodePort: 32767,
		ClusterIPs: []netip.Addr{ip(long + "1"), ip("255.255.255.251")}, SessionAffinityClientIP: true, AffinityTimeoutSeconds: 86400,
		LoadBalancerIPs: []netip.Addr{ip(long + "2"), ip("255.255.255.252")}, ExternalIPs: []netip.Addr{ip(long + "3")},
		SourceRanges:        []netip.Prefix{netip.MustParsePrefix(long + "4/127"), netip.MustParsePrefix("255.255.255.254/31")},
		ExternalPolicyLocal: true, InternalPolicyLocal: true, HealthCheckNodePort: 32766,
		Endpoints: []model.Endpoint{
			{Addr: ip(long + "5"), Port: 65535, Ready: true, NodeName: "node"},
			{Addr: ip("255.255.255.253"), Port: 65535, Ready: true, NodeName: "node"},
		},
	}
	st := &model.State{NodeName: "node", Services: []*model.ServicePort{sp},
		NodePortIPs:  []netip.Addr{ip("127.0.0.1"), ip(long + "6")},
		ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix(long + "7/128"), netip.MustParsePrefix("255.255.255.255/32")}}
	for _, internal := range []bool{true, false} {
		sp.InternalPolicyLocal = internal
		rs := Build(st)
		for _, f := range rs.SortedFamilies() {
			for _, c := range rs.Tables[f].SortedChains() {
				for _, r := range c.Rules {
					if id := r.Identity(f); strings.HasPrefix(id, nft.HashedIdentityPrefix) {
						t.Errorf("%s chain %s: rule of %d bytes stored as a hash: %s", f, c.Name, len(r.Render(f)), r.Render(f))
					}
				}
			}
		}
	}
}
