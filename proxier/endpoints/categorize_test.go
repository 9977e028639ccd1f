package endpoints_test

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/nftproxy/nftproxy/proxier/endpoints"
	"github.com/nftproxy/nftproxy/proxier/model"
)

// Endpoint states, as EndpointSlice conditions combine them.
const (
	ready       = iota // ready, serving, not terminating
	terminating        // serving and terminating: the graceful-termination fallback
	draining           // terminating and no longer serving: never used
	notReady           // neither ready nor terminating (starting, failing probes)
)

// ep builds endpoint 10.0.0.<n> on node in the given state.
func ep(n byte, node string, state int) model.Endpoint {
	e := model.Endpoint{Addr: netip.AddrFrom4([4]byte{10, 0, 0, n}), Port: 80, NodeName: node}
	switch state {
	case ready:
		e.Ready, e.Serving = true, true
	case terminating:
		e.Serving, e.Terminating = true, true
	case draining:
		e.Terminating = true
	}
	return e
}

func octets(eps []model.Endpoint) []byte {
	var out []byte
	for _, e := range eps {
		out = append(out, e.Addr.As4()[3])
	}
	return out
}

// The cases follow upstream's TestCategorizeEndpoints (pkg/proxy/topology_test.go)
// for the parts that do not involve hints (those are in topology_test.go).
func TestClusterAndLocalEndpoints(t *testing.T) {
	const node = "node-a"
	cases := []struct {
		name         string
		eps          []model.Endpoint
		cluster      []byte
		local        []byte
		localReady   int
		usableByNode bool // len(Local) > 0: a Local policy has somewhere to send
	}{
		{name: "no endpoints"},
		{name: "ready everywhere: all cluster-wide, this node's locally",
			eps:     []model.Endpoint{ep(1, node, ready), ep(2, "node-b", ready), ep(3, node, ready)},
			cluster: []byte{1, 2, 3}, local: []byte{1, 3}, localReady: 2, usableByNode: true},
		{name: "not ready and draining endpoints are never used",
			eps:     []model.Endpoint{ep(1, node, notReady), ep(2, "node-b", ready), ep(3, node, draining)},
			cluster: []byte{2}},
		{name: "no ready endpoint anywhere: serving terminating ones",
			eps:     []model.Endpoint{ep(1, node, terminating), ep(2, "node-b", terminating), ep(3, node, draining)},
			cluster: []byte{1, 2}, local: []byte{1}, usableByNode: true},
		{name: "a ready endpoint elsewhere hides local terminating ones cluster-wide, not locally",
			eps:     []model.Endpoint{ep(1, node, terminating), ep(2, "node-b", ready)},
			cluster: []byte{2}, local: []byte{1}, usableByNode: true},
		{name: "local ready wins over local terminating",
			eps:     []model.Endpoint{ep(1, node, terminating), ep(2, node, ready)},
			cluster: []byte{2}, local: []byte{2}, localReady: 1, usableByNode: true},
		{name: "only not-ready endpoints: nothing (the service rejects)",
			eps: []model.Endpoint{ep(1, node, notReady), ep(2, "node-b", notReady)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sp := &model.ServicePort{Endpoints: tc.eps}
			if got := octets(endpoints.Cluster(sp, node, "zone-a")); !slices.Equal(got, tc.cluster) {
				t.Errorf("cluster-wide %v, want %v", got, tc.cluster)
			}
			local := endpoints.Local(tc.eps, node)
			if got := octets(local); !slices.Equal(got, tc.local) {
				t.Errorf("local %v, want %v", got, tc.local)
			}
			if got := endpoints.LocalReady(node, []*model.ServicePort{sp}); got != tc.localReady {
				t.Errorf("local ready %d, want %d", got, tc.localReady)
			}
			if got := len(local) > 0; got != tc.usableByNode {
				t.Errorf("usable on this node %v, want %v", got, tc.usableByNode)
			}
		})
	}
}

// Usable returns its input unchanged (no copy) when every endpoint is
// ready, and callers may not append to it.
func TestUsableSharesAllReadyInput(t *testing.T) {
	eps := []model.Endpoint{ep(1, "n", ready), ep(2, "n", ready)}
	got := endpoints.Usable(eps)
	if &got[0] != &eps[0] || cap(got) != len(got) {
		t.Fatalf("want the input itself with clipped capacity")
	}
}
