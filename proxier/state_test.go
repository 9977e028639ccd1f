package proxier

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	"k8s.io/apimachinery/pkg/types"

	"github.com/nftproxy/nftproxy/proxier/claims"
	"github.com/nftproxy/nftproxy/proxier/model"
)

// TestStateSplicesChangesLikeAFullSort changes random Services and checks
// that the spliced list state() keeps equals a fresh sort every time.
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
	for step := 0; step < 300; step++ {
		for c := r.IntN(5); c >= 0; c-- {
			k := types.NamespacedName{Namespace: fmt.Sprint("ns", r.IntN(4)), Name: fmt.Sprint("s", r.IntN(40))}
			p.setService(k, ports(k))
		}
		got := p.state().Services
		fresh := &Proxier{services: p.services, claims: p.claims, flatStale: true}
		if want := fresh.state().Services; !reflect.DeepEqual(got, want) {
			t.Fatalf("step %d: spliced list differs from a full sort", step)
		}
	}
}
