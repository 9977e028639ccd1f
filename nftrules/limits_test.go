package nftrules_test

import (
	"net/netip"
	"reflect"
	"testing"

	"github.com/nftproxy/nftproxy/nftrules"
	"github.com/nftproxy/nftproxy/nftrules/nft"
	"github.com/nftproxy/nftproxy/proxier/model"
)

// manyEndpoints returns n ready IPv4 endpoints 10.128.0.0 onwards, the
// first local of them on this node (flowCluster's node-a).
func manyEndpoints(n, local int) []model.Endpoint {
	eps := make([]model.Endpoint, n)
	base := netip.MustParseAddr("10.128.0.0").As4()
	for i := range eps {
		a := base
		a[1], a[2], a[3] = byte(128+i>>16), byte(i>>8), byte(i)
		eps[i] = model.Endpoint{Addr: netip.AddrFrom4(a), Port: 8080, Ready: true, Serving: true}
		if i < local {
			eps[i].NodeName = "node-a"
		}
	}
	return eps
}

// TestEndpointsOverLimit: what EndpointsOverLimit reports is exactly what
// Build leaves out of the service port's block of the endpoint map.
func TestEndpointsOverLimit(t *testing.T) {
	tests := []struct {
		name   string
		n      int
		local  int
		change func(*model.ServicePort)
		want   map[nft.Family]int
		// programmed is the number of entries of the endpoint map.
		programmed int
	}{
		{name: "at the limit", n: nftrules.MaxEndpoints, programmed: nftrules.MaxEndpoints},
		{name: "six over", n: nftrules.MaxEndpoints + 6, want: map[nft.Family]int{nft.IPv4: 6}, programmed: nftrules.MaxEndpoints},
		{
			// The 10 local endpoints take 10 entries after the cluster-wide
			// ones: 10 cluster-wide ones do not fit.
			name: "ETP Local NodePort at the limit", n: nftrules.MaxEndpoints, local: 10,
			change: func(sp *model.ServicePort) { sp.NodePort, sp.ExternalPolicyLocal = 30080, true },
			want:   map[nft.Family]int{nft.IPv4: 10}, programmed: nftrules.MaxEndpoints,
		},
		{
			// No external chain: the local endpoints need no entries.
			name: "ETP Local without external exposure", n: nftrules.MaxEndpoints, local: 10,
			change: func(sp *model.ServicePort) { sp.ExternalPolicyLocal = true }, programmed: nftrules.MaxEndpoints,
		},
	}
	for _, tc := range tests {
		sp := servicePort(1, "ns/big:http", "tcp", 80, "172.30.0.1")
		sp.Endpoints = manyEndpoints(tc.n, tc.local)
		if tc.change != nil {
			tc.change(sp)
		}
		st := flowCluster(sp)
		got := nftrules.EndpointsOverLimit(st, sp)
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: EndpointsOverLimit = %v, want %v", tc.name, got, tc.want)
		}
		programmed := nftrules.Build(st).Tables[nft.IPv4].Sets.Get(nftrules.EndpointMapName(nft.TCP, 1)).Len()
		if programmed != tc.programmed {
			t.Errorf("%s: %d endpoint map entries, want %d", tc.name, programmed, tc.programmed)
		}
	}
}
