package proxier

import (
	"net/netip"
	"testing"

	v1 "k8s.io/api/core/v1"

	"github.com/nftproxy/nftproxy/proxier/conntrack"
	"github.com/nftproxy/nftproxy/proxier/model"
)

type fakeCleaner struct{ calls, repairs int }

func (f *fakeCleaner) Programmed(*conntrack.Index) { f.calls++ }
func (f *fakeCleaner) Repaired(*model.State)       { f.repairs++ }

func TestConntrackHandedOverOnlyWhenUDPFrontendsOrEndpointsMayChange(t *testing.T) {
	f := &fakeCleaner{}
	p := &Proxier{cfg: Config{Conntrack: f}}
	udp := &model.ServicePort{Protocol: v1.ProtocolUDP}
	tcp := &model.ServicePort{Protocol: v1.ProtocolTCP}
	udp2 := &model.ServicePort{Protocol: v1.ProtocolUDP}
	nodeIP := []netip.Addr{netip.MustParseAddr("192.168.1.1")}
	steps := []struct {
		name string
		st   model.State
		want int // calls so far
	}{
		{"first sync hands over (entries may predate us)", model.State{Services: []*model.ServicePort{udp, tcp}}, 1},
		{"same State: nothing", model.State{Services: []*model.ServicePort{udp, tcp}}, 1},
		{"only a TCP service port changed: nothing", model.State{Services: []*model.ServicePort{udp, {Protocol: v1.ProtocolTCP}}}, 1},
		{"a UDP service port changed", model.State{Services: []*model.ServicePort{udp2, tcp}}, 2},
		{"a UDP service port removed", model.State{Services: []*model.ServicePort{tcp}}, 3},
		{"NodePort addresses changed", model.State{NodePortIPs: nodeIP, Services: []*model.ServicePort{tcp}}, 4},
		{"zone changed (topology)", model.State{NodeZone: "b", NodePortIPs: nodeIP, Services: []*model.ServicePort{tcp}}, 5},
		{"unchanged again: nothing", model.State{NodeZone: "b", NodePortIPs: nodeIP, Services: []*model.ServicePort{tcp}}, 5},
	}
	for _, s := range steps {
		p.cleanConntrack(&s.st)
		if f.calls != s.want {
			t.Fatalf("%s: %d hand-overs, want %d", s.name, f.calls, s.want)
		}
	}
}
