package proxier

import (
	"fmt"
	"k8s.io/apimachinery/pkg/types"
	"math/rand/v2"
	"net/netip"
	"slices"
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

// A State with a Delta is judged by its changed Services only; it must
// decide exactly as a look at every service port would, including after a
// State that was never handed over (a failed sync: the Delta then starts
// from a State the cleanup did not see, and everything is looked at).
func TestConntrackHandOverWithDeltaDecidesAsAFullLook(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	const services = 20
	key := func(i int) types.NamespacedName {
		return types.NamespacedName{Namespace: "ns", Name: fmt.Sprintf("svc-%02d", i)}
	}
	newPort := func(i int) *model.ServicePort {
		sp := &model.ServicePort{Protocol: []v1.Protocol{v1.ProtocolUDP, v1.ProtocolTCP}[rng.IntN(2)]}
		sp.Name.NamespacedName = key(i)
		return sp
	}
	cur := map[int]*model.ServicePort{}
	for i := range services {
		cur[i] = newPort(i)
	}
	withDelta, full := &fakeCleaner{}, &fakeCleaner{}
	pd := &Proxier{cfg: Config{Conntrack: withDelta}}
	pf := &Proxier{cfg: Config{Conntrack: full}}
	byDelta := 0
	for gen := uint64(1); gen <= 400; gen++ {
		var changed []types.NamespacedName
		for range rng.IntN(3) {
			i := rng.IntN(services)
			switch {
			case cur[i] == nil || rng.IntN(4) > 0:
				cur[i] = newPort(i) // added or replaced, UDP or TCP
			default:
				delete(cur, i)
			}
			changed = append(changed, key(i))
		}
		slices.SortFunc(changed, model.CompareServices)
		changed = slices.Compact(changed)
		st := &model.State{Gen: gen, Delta: &model.Delta{Since: gen - 1, Changed: changed}}
		for i := range services {
			if sp := cur[i]; sp != nil {
				st.Services = append(st.Services, sp)
			}
		}
		if gen == 1 {
			st.Delta = nil
		}
		if rng.IntN(10) == 0 {
			continue // this State's sync failed: no cleanup saw it
		}
		if st.Delta != nil && st.Delta.Since == pd.udp.gen {
			byDelta++
		}
		pd.cleanConntrack(st)
		plain := *st
		plain.Delta = nil
		pf.cleanConntrack(&plain)
		if withDelta.calls != full.calls {
			t.Fatalf("State %d (changed %v): %d hand-overs with the Delta, %d looking at every port", gen, changed, withDelta.calls, full.calls)
		}
	}
	if full.calls < 50 || full.calls > 300 || byDelta < 200 {
		t.Fatalf("%d hand-overs, %d States judged by their Delta in 400: the sequence does not exercise both outcomes and both paths",
			full.calls, byDelta)
	}
}
