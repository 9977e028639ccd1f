package proxier

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/types"

	"github.com/nftproxy/nftproxy/proxier/claims"
	"github.com/nftproxy/nftproxy/proxier/model"
)

// TestStateSplicesChangesLikeAFullSort changes random Services and checks
// that the spliced list state() keeps equals a fresh sort every time, and
// that each State's Delta names every Service whose ports differ from the
// previous State's (what lets the Builder look at those only).
func TestStateSplicesChangesLikeAFullSort(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	p := &Proxier{services: map[types.NamespacedName][]*model.ServicePort{}, ids: newIDAllocator(1 << 20), claims: claims.New(claims.Options{})}
	ports := func(k types.NamespacedName) []*model.ServicePort {
		var out []*model.ServicePort
		for i := r.IntN(3); i > 0; i-- {
			sp := &model.ServicePort{}
			sp.Name.NamespacedName, sp.Name.Port = k, fmt.Sprint("p", i)
			out = append([]*model.ServicePort{sp}, out...)
		}
		return out
	}
	var prev *model.State
	type stateAt struct {
		st    *model.State
		ports []*model.ServicePort
	}
	var history []stateAt
	for step := 0; step < 300; step++ {
		for c := r.IntN(5); c >= 0; c-- {
			k := types.NamespacedName{Namespace: fmt.Sprint("ns", r.IntN(4)), Name: fmt.Sprint("s", r.IntN(40))}
			p.setService(k, ports(k))
		}
		st := p.state()
		got := slices.Collect(st.All())
		fresh := &Proxier{services: p.services, claims: p.claims, flatStale: true}
		if want := slices.Collect(fresh.state().All()); !reflect.DeepEqual(got, want) || st.Len() != len(want) {
			t.Fatalf("step %d: patched list differs from a full sort", step)
		}
		for _, k := range deltaKeys(st) {
			if want := p.claims.Ports(k); !slices.Equal(st.PortsOf(k), want) {
				t.Fatalf("step %d: PortsOf(%s) = %v, want %v", step, k, st.PortsOf(k), want)
			}
		}
		// Earlier States keep the list they were made with.
		for _, h := range history {
			if !reflect.DeepEqual(slices.Collect(h.st.All()), h.ports) {
				t.Fatalf("step %d: the list of an earlier State changed", step)
			}
		}
		history = append(history[max(0, len(history)-20):], stateAt{st, got})
		if prev != nil {
			if st.Delta == nil || st.Delta.Since != prev.Gen || st.Gen == prev.Gen {
				t.Fatalf("step %d: State %d has Delta %+v, want one since State %d", step, st.Gen, st.Delta, prev.Gen)
			}
			for k := range differingServices(slices.Collect(prev.All()), got) {
				if !slices.Contains(st.Delta.Changed, k) {
					t.Fatalf("step %d: Service %s changed but Delta names only %v", step, k, st.Delta.Changed)
				}
			}
		}
		prev = st
	}

	// A node change: the next State names no changed Services, so that
	// nothing builds from the previous one's findings.
	p.nodeZone = "zone-b"
	if st := p.state(); st.Delta != nil {
		t.Fatalf("State after a node change has Delta %+v, want none", st.Delta)
	}
	if st := p.state(); st.Delta == nil || len(st.Delta.Changed) != 0 {
		t.Fatalf("State after an unchanged one has Delta %+v, want one naming no Service", st.Delta)
	}
}

// differingServices names the Services whose service ports (by identity)
// differ between two States' lists.
func differingServices(a, b []*model.ServicePort) map[types.NamespacedName]bool {
	ports := func(l []*model.ServicePort) map[types.NamespacedName][]*model.ServicePort {
		m := map[types.NamespacedName][]*model.ServicePort{}
		for _, sp := range l {
			m[sp.Name.NamespacedName] = append(m[sp.Name.NamespacedName], sp)
		}
		return m
	}
	pa, pb := ports(a), ports(b)
	out := map[types.NamespacedName]bool{}
	for _, m := range []map[types.NamespacedName][]*model.ServicePort{pa, pb} {
		for k := range m {
			if !slices.Equal(pa[k], pb[k]) {
				out[k] = true
			}
		}
	}
	return out
}

func deltaKeys(st *model.State) []types.NamespacedName {
	if st.Delta == nil {
		return nil
	}
	return st.Delta.Changed
}
