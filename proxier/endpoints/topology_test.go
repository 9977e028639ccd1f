package endpoints_test

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/nftproxy/nftproxy/proxier/endpoints"
	"github.com/nftproxy/nftproxy/proxier/model"
)

func TestClusterEndpointsFollowTopologyHints(t *testing.T) {
	// ep builds a ready endpoint 10.0.0.<n> with hints.
	ep := func(n byte, zones, nodes []string) model.Endpoint {
		return model.Endpoint{Addr: netip.AddrFrom4([4]byte{10, 0, 0, n}), Port: 80, Ready: true, Serving: true, Hints: model.NewHints(zones, nodes)}
	}
	notReady := func(e model.Endpoint) model.Endpoint { e.Ready = false; return e }
	terminating := func(e model.Endpoint) model.Endpoint { e.Ready, e.Terminating = false, true; return e }
	za, zb := []string{"zone-a"}, []string{"zone-b"}

	cases := []struct {
		name       string
		node, zone string
		eps        []model.Endpoint
		want       []byte // last octets of the chosen endpoints
	}{
		{"zone hints for every endpoint: same zone only", "n1", "zone-a",
			[]model.Endpoint{ep(1, za, nil), ep(2, zb, nil), ep(3, za, nil)}, []byte{1, 3}},
		{"one ready endpoint without a hint: all", "n1", "zone-a",
			[]model.Endpoint{ep(1, za, nil), ep(2, nil, nil), ep(3, zb, nil)}, []byte{1, 2, 3}},
		{"an unready endpoint without a hint does not count", "n1", "zone-a",
			[]model.Endpoint{ep(1, za, nil), notReady(ep(2, nil, nil)), ep(3, zb, nil)}, []byte{1}},
		{"no endpoint hinted for this zone: all", "n1", "zone-c",
			[]model.Endpoint{ep(1, za, nil), ep(2, zb, nil)}, []byte{1, 2}},
		{"node without a zone label: all", "n1", "",
			[]model.Endpoint{ep(1, za, nil), ep(2, zb, nil)}, []byte{1, 2}},
		{"node hints for every endpoint: same node only", "n1", "zone-a",
			[]model.Endpoint{ep(1, za, []string{"n1"}), ep(2, za, []string{"n2"})}, []byte{1}},
		{"node hints, none for this node: zone hints", "n3", "zone-a",
			[]model.Endpoint{ep(1, za, []string{"n1"}), ep(2, zb, []string{"n2"})}, []byte{1}},
		{"the only ready endpoint is hinted for another zone: hints ignored", "n1", "zone-a",
			[]model.Endpoint{terminating(ep(1, za, nil)), terminating(ep(2, zb, nil)), ep(3, zb, nil)}, []byte{3}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sp := &model.ServicePort{Endpoints: tc.eps}
			var got []byte
			for _, e := range endpoints.Cluster(sp, tc.node, tc.zone) {
				got = append(got, e.Addr.As4()[3])
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("endpoints %v, want %v", got, tc.want)
			}
		})
	}
}
