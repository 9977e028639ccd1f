package proxier

import (
	"testing"

	v1 "k8s.io/api/core/v1"

	"github.com/nftproxy/nftproxy/proxier/conntrack"
	"github.com/nftproxy/nftproxy/proxier/model"
)

type fakeCleaner struct{ calls int }

func (f *fakeCleaner) Clean(cur, prev *conntrack.Index) (int, error) {
	f.calls++
	return 1, nil
}

func TestConntrackCleanedOnlyWhenUDPServicePortsChange(t *testing.T) {
	f := &fakeCleaner{}
	p := &Proxier{cfg: Config{Conntrack: f}}
	udp := &model.ServicePort{Protocol: v1.ProtocolUDP}
	tcp := &model.ServicePort{Protocol: v1.ProtocolTCP}
	udp2 := &model.ServicePort{Protocol: v1.ProtocolUDP}
	steps := []struct {
		name     string
		services []*model.ServicePort
		want     int // calls so far
	}{
		{"first sync cleans (entries may predate us)", []*model.ServicePort{udp, tcp}, 1},
		{"same State: nothing", []*model.ServicePort{udp, tcp}, 1},
		{"only a TCP service port changed: nothing", []*model.ServicePort{udp, {Protocol: v1.ProtocolTCP}}, 1},
		{"a UDP service port changed: clean", []*model.ServicePort{udp2, tcp}, 2},
		{"a UDP service port removed: clean", []*model.ServicePort{tcp}, 3},
	}
	for _, s := range steps {
		p.cleanConntrack(&model.State{Services: s.services})
		if f.calls != s.want {
			t.Fatalf("%s: %d cleanups, want %d", s.name, f.calls, s.want)
		}
	}
}
