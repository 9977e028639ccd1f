package claims

import (
	"fmt"
	"net/netip"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/nftproxy/nftproxy/proxier/model"
)

// BenchmarkResolveOneChange* is the claims step of a sync in which one
// Service changed, after a first Resolve of every Service: issue 11 wants
// it independent of the number of Services.
func BenchmarkResolveOneChange1k(b *testing.B)  { benchResolveOneChange(b, 1000) }
func BenchmarkResolveOneChange50k(b *testing.B) { benchResolveOneChange(b, 50000) }

func benchResolveOneChange(b *testing.B, n int) {
	r := New(Options{})
	sp := func(i int) (types.NamespacedName, []*model.ServicePort) {
		k := types.NamespacedName{Namespace: "bench", Name: fmt.Sprintf("svc-%05d", i)}
		p := &model.ServicePort{Protocol: v1.ProtocolTCP, Port: 80,
			ClusterIPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 96, byte(i >> 8), byte(i)})}}
		p.Name.NamespacedName = k
		return k, []*model.ServicePort{p}
	}
	for i := range n {
		r.SetService(sp(i))
	}
	r.Resolve()
	b.ReportAllocs()
	for b.Loop() {
		r.SetService(sp(n / 2))
		r.Resolve()
	}
}
