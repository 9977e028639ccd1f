package endpoints_test

import (
	"net/netip"
	"testing"

	"github.com/nftproxy/nftproxy/proxier/endpoints"
	"github.com/nftproxy/nftproxy/proxier/model"
)

func TestLocalReadyCountsPodsNotAddresses(t *testing.T) {
	ep := func(addr, node string, ready bool) model.Endpoint {
		return model.Endpoint{Addr: netip.MustParseAddr(addr), Port: 80, Ready: ready, Serving: ready, NodeName: node}
	}
	// Two dual-stack pods on node-a (each with an IPv4 and an IPv6
	// address, on two ports), one on node-b, one not ready on node-a.
	tcp := &model.ServicePort{Endpoints: []model.Endpoint{
		ep("10.0.0.1", "node-a", true), ep("fd00::1", "node-a", true),
		ep("10.0.0.2", "node-a", true), ep("fd00::2", "node-a", true),
		ep("10.0.0.3", "node-b", true), ep("fd00::3", "node-b", true),
		ep("10.0.0.4", "node-a", false), ep("fd00::4", "node-a", false),
	}}
	udp := &model.ServicePort{Endpoints: tcp.Endpoints}
	for node, want := range map[string]int{"node-a": 2, "node-b": 1, "node-c": 0} {
		if got := endpoints.LocalReady(node, []*model.ServicePort{tcp, udp}); got != want {
			t.Errorf("%s: %d local endpoints, want %d", node, got, want)
		}
	}
}
