package proxier

import (
	"net/netip"
	"slices"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestNodeInfo(t *testing.T) {
	addr := func(typ v1.NodeAddressType, a string) v1.NodeAddress { return v1.NodeAddress{Type: typ, Address: a} }
	tests := []struct {
		name     string
		node     *v1.Node
		wantZone string
		wantIPs  []string
	}{
		{name: "missing node"},
		{
			name: "dual-stack internal IPs, primary first; external and junk ignored",
			node: &v1.Node{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{LabelZone: "zone-a"}},
				Status: v1.NodeStatus{Addresses: []v1.NodeAddress{
					addr(v1.NodeHostName, "n1"),
					addr(v1.NodeExternalIP, "203.0.113.1"),
					addr(v1.NodeInternalIP, "fd00::1"),
					addr(v1.NodeInternalIP, "bogus"),
					addr(v1.NodeInternalIP, "10.0.0.1"),
					addr(v1.NodeInternalIP, "10.0.0.1"),
				}},
			},
			wantZone: "zone-a",
			wantIPs:  []string{"fd00::1", "10.0.0.1"},
		},
		{
			name:    "external IPs when there is no internal one",
			node:    &v1.Node{Status: v1.NodeStatus{Addresses: []v1.NodeAddress{addr(v1.NodeExternalIP, "203.0.113.1")}}},
			wantIPs: []string{"203.0.113.1"},
		},
	}
	for _, tc := range tests {
		zone, ips := nodeInfo(tc.node)
		var want []netip.Addr
		for _, s := range tc.wantIPs {
			want = append(want, netip.MustParseAddr(s))
		}
		if zone != tc.wantZone || !slices.Equal(ips, want) {
			t.Errorf("%s: nodeInfo = %q, %v; want %q, %v", tc.name, zone, ips, tc.wantZone, want)
		}
	}
}
