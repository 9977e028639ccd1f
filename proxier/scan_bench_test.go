package proxier

import (
	"fmt"
	"net/netip"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/nftproxy/nftproxy/proxier/model"
)

// BenchmarkSyncScans50kx10 is what the proxier's own per-sync steps over
// all service ports cost at 50,000 Services x 10 endpoints when one
// Service changed: the endpoint limit check, over all service ports and
// over the changed Service only (model.Delta), the conntrack cleanup's
// look for changed UDP service ports (the same two ways), and the patched list (the
// Builder's share is BenchmarkKernelOneEndpointChange*).
func BenchmarkSyncScans50kx10(b *testing.B) {
	flat := make([]*model.ServicePort, 0, 50000)
	for i := range 50000 {
		sp := &model.ServicePort{ID: uint32(i + 1), Protocol: v1.ProtocolTCP, Port: 80,
			ClusterIPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 96, byte(i >> 8), byte(i)})}}
		sp.Name.NamespacedName = types.NamespacedName{Namespace: "bench", Name: fmt.Sprintf("svc-%05d", i)}
		for e := range 10 {
			sp.Endpoints = append(sp.Endpoints, model.Endpoint{Addr: netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(e)}), Port: 8080, Ready: true, Serving: true})
		}
		flat = append(flat, sp)
	}
	st := &model.State{NodeName: "node", Services: flat}
	changed := []types.NamespacedName{flat[25000].Name.NamespacedName}
	same := func(types.NamespacedName) []*model.ServicePort { return []*model.ServicePort{flat[25000]} }
	b.Run("checkEndpointLimits-all", func(b *testing.B) {
		p := &Proxier{}
		for b.Loop() {
			p.checkEndpointLimits(st)
		}
	})
	b.Run("checkEndpointLimits-delta", func(b *testing.B) {
		p := &Proxier{}
		st.Gen = 1
		p.checkEndpointLimits(st)
		for b.Loop() {
			st.Delta = &model.Delta{Since: st.Gen, Changed: changed}
			st.Gen++
			p.checkEndpointLimits(st)
		}
	})
	// One UDP service port in ten, as a cluster with DNS and a few UDP
	// Services might have; the change is to a TCP Service.
	for i := 0; i < len(flat); i += 10 {
		udp := *flat[i]
		udp.Protocol = v1.ProtocolUDP
		flat[i] = &udp
	}
	cleanup := func(b *testing.B, delta bool) {
		p := &Proxier{cfg: Config{Conntrack: &fakeCleaner{}}}
		st := &model.State{NodeName: "node", Services: flat, Gen: 1}
		p.cleanConntrack(st)
		b.ReportAllocs()
		for b.Loop() {
			st = &model.State{NodeName: "node", Services: flat, Gen: st.Gen + 1}
			if delta {
				st.Delta = &model.Delta{Since: st.Gen - 1, Changed: changed}
			}
			p.cleanConntrack(st)
		}
	}
	b.Run("cleanConntrack-all", func(b *testing.B) { cleanup(b, false) })
	b.Run("cleanConntrack-delta", func(b *testing.B) { cleanup(b, true) })
	// The State's list with the changed Service's ports replaced: as one
	// flat slice (before model.PortList), and as a PortList.
	b.Run("patchFlat", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			model.PatchSorted(flat, changed, same)
		}
	})
	b.Run("PortList.Patch", func(b *testing.B) {
		l := model.NewPortList(flat)
		b.ReportAllocs()
		for b.Loop() {
			l = l.Patch(changed, same)
		}
	})
}
