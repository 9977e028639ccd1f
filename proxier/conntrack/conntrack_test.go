package conntrack

import (
	"net/netip"
	"testing"

	"github.com/nftproxy/nftproxy/proxier/model"
)

func TestIndexStale(t *testing.T) {
	ap := netip.MustParseAddrPort
	udp := &model.ServicePort{
		Protocol: "UDP", Port: 53, NodePort: 30053,
		ClusterIPs:      []netip.Addr{netip.MustParseAddr("10.96.0.10")},
		ExternalIPs:     []netip.Addr{netip.MustParseAddr("192.0.2.10")},
		LoadBalancerIPs: []netip.Addr{netip.MustParseAddr("198.51.100.10")},
		Endpoints: []model.Endpoint{
			{Addr: netip.MustParseAddr("10.244.1.2"), Port: 5353, Ready: true, Serving: true},
			{Addr: netip.MustParseAddr("10.244.1.3"), Port: 5353, Serving: true, Terminating: true},
			{Addr: netip.MustParseAddr("10.244.1.4"), Port: 5353},
		},
	}
	tcp := &model.ServicePort{Protocol: "TCP", Port: 80, ClusterIPs: []netip.Addr{netip.MustParseAddr("10.96.0.11")}}
	gone := &model.ServicePort{Protocol: "UDP", Port: 514, ClusterIPs: []netip.Addr{netip.MustParseAddr("10.96.0.12")}}
	cur := NewIndex(&model.State{Services: []*model.ServicePort{udp, tcp}})
	prev := NewIndex(&model.State{Services: []*model.ServicePort{udp, tcp, gone}})

	cases := []struct {
		name      string
		dst, from string
		stale     bool
	}{
		{"ClusterIP flow to a ready endpoint is kept", "10.96.0.10:53", "10.244.1.2:5353", false},
		{"ClusterIP flow to a serving terminating endpoint is kept", "10.96.0.10:53", "10.244.1.3:5353", false},
		{"ClusterIP flow to an endpoint that is not serving is stale", "10.96.0.10:53", "10.244.1.4:5353", true},
		{"ClusterIP flow to a removed endpoint is stale", "10.96.0.10:53", "10.244.9.9:5353", true},
		{"flow never DNATed (reply from the ClusterIP) is stale", "10.96.0.10:53", "10.96.0.10:53", true},
		{"external IP flow to a removed endpoint is stale", "192.0.2.10:53", "10.244.9.9:5353", true},
		{"load-balancer IP flow to a ready endpoint is kept", "198.51.100.10:53", "10.244.1.2:5353", false},
		{"NodePort flow to a removed endpoint is stale", "192.168.50.1:30053", "10.244.9.9:5353", true},
		{"flow of a deleted UDP Service is stale", "10.96.0.12:514", "10.244.2.2:514", true},
		{"TCP Service addresses are not judged", "10.96.0.11:80", "10.244.9.9:80", false},
		{"flow to something else is kept", "8.8.8.8:53", "8.8.8.8:53", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := cur.Stale(ap(tc.dst), ap(tc.from), prev); got != tc.stale {
				t.Errorf("Stale(%s, reply from %s) = %v, want %v", tc.dst, tc.from, got, tc.stale)
			}
		})
	}
}
