package nftrules_test

import (
	"cmp"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/nftproxy/nftproxy/nftrules"
	"github.com/nftproxy/nftproxy/nftrules/nft"
	"github.com/nftproxy/nftproxy/nftrules/nft/nftfake"
	"github.com/nftproxy/nftproxy/proxier/claims"
	"github.com/nftproxy/nftproxy/proxier/model"
)

// applyTo applies tx to the fake kernel, which refuses what the kernel
// would (see package nftfake), and checks that it then holds want.
func applyTo(t testing.TB, kernel *nftfake.Fake, tx *nft.Transaction, want *nft.Ruleset) {
	t.Helper()
	if err := kernel.Apply(tx); err != nil {
		t.Fatal(err)
	}
	if err := kernel.Compare(want); err != nil {
		t.Fatal(err)
	}
}

// world is what the randomized test changes: service ports as the
// proxier converts them (IDs from a lowest-free allocator, as the real one,
// so a freed ID is reused at once by another service port), passed through
// the proxier's conflict resolver like every State the proxier builds.
type world struct {
	raw      map[types.NamespacedName]*model.ServicePort
	claims   *claims.Resolver
	freeIDs  []uint32 // released IDs, reused lowest first
	nextID   uint32
	serial   int // names are never reused: a reused ID gets a new name
	nodePort []netip.Addr
	touched  map[types.NamespacedName]bool // Services set since the last state
	gen      uint64
}

func newWorld(nodePortIPs []netip.Addr) *world {
	w := &world{raw: map[types.NamespacedName]*model.ServicePort{}, claims: claims.New(claims.Options{}), nodePort: nodePortIPs}
	w.claims.SetNodeAddresses(nodePortIPs, nodePortIPs)
	return w
}

func (w *world) allocate() uint32 {
	if len(w.freeIDs) > 0 {
		slices.Sort(w.freeIDs)
		id := w.freeIDs[0]
		w.freeIDs = w.freeIDs[1:]
		return id
	}
	w.nextID++
	return w.nextID
}

func (w *world) set(sp *model.ServicePort) { w.setService(sp.Name.NamespacedName, sp) }

// setService makes sp the one port of Service k; nil removes it.
func (w *world) setService(k types.NamespacedName, sp *model.ServicePort) {
	var ports []*model.ServicePort
	if sp != nil {
		w.raw[k], ports = sp, []*model.ServicePort{sp}
	} else {
		delete(w.raw, k)
	}
	w.claims.SetService(k, ports)
	if w.touched == nil {
		w.touched = map[types.NamespacedName]bool{}
	}
	w.touched[k] = true
}

// state resolves conflicts and makes st the State to build. With delta it
// also names, as the proxier does, the Services changed since the last
// state (those set and those whose claims changed), so that a Builder
// looks at those only.
func (w *world) state(st *model.State, delta bool) {
	changed, _ := w.claims.Resolve()
	if w.touched == nil {
		w.touched = map[types.NamespacedName]bool{}
	}
	for _, k := range changed {
		w.touched[k] = true
	}
	st.Services = st.Services[:0:0]
	for k := range w.raw {
		st.Services = append(st.Services, w.claims.Ports(k)...)
	}
	slices.SortFunc(st.Services, func(a, b *model.ServicePort) int { return cmp.Compare(a.Name.Name, b.Name.Name) })
	st.Delta = nil
	if delta {
		st.Delta = &model.Delta{Since: w.gen, Changed: slices.SortedFunc(maps.Keys(w.touched), model.CompareServices)}
	}
	w.gen++
	st.Gen = w.gen
	w.touched = nil
}

// mutate changes a random service port into a new value (the proxier's
// contract: ServicePorts are immutable), or adds or removes one.
func (w *world) mutate(r *rand.Rand) {
	names := slices.SortedFunc(maps.Keys(w.raw), func(a, b types.NamespacedName) int { return cmp.Compare(a.Name, b.Name) })
	switch op := r.IntN(6); {
	case op == 0 || len(names) == 0: // add
		w.serial++
		w.set(w.randomServicePort(r, w.allocate(), fmt.Sprintf("s%03d", w.serial)))
	case op == 1: // remove
		k := names[r.IntN(len(names))]
		w.freeIDs = append(w.freeIDs, w.raw[k].ID)
		w.setService(k, nil)
	case op == 2: // change the external exposure and policies
		sp := *w.raw[names[r.IntN(len(names))]]
		w.randomExternal(r, &sp)
		w.set(&sp)
	default: // change endpoints
		sp := *w.raw[names[r.IntN(len(names))]]
		sp.Endpoints = randomEndpoints(r)
		w.set(&sp)
	}
}

// clusterIP4 is the IPv4 ClusterIP of the n-th address of a small pool:
// Services sometimes share one (inconsistent API data the proxier must
// survive), and external addresses are drawn from the same pool.
func clusterIP4(n int) netip.Addr { return netip.AddrFrom4([4]byte{10, 96, 0, byte(n)}) }

func (w *world) randomServicePort(r *rand.Rand, id uint32, name string) *model.ServicePort {
	protos := []v1.Protocol{v1.ProtocolTCP, v1.ProtocolUDP, v1.ProtocolSCTP}
	sp := servicePortForTest(id, name, protos[r.IntN(3)], uint16(80+r.IntN(3)), clusterIP4(r.IntN(12)))
	if r.IntN(2) == 0 {
		sp.ClusterIPs = append(sp.ClusterIPs, netip.AddrFrom16([16]byte{0xfd, 0x96, 15: byte(r.IntN(12))}))
	}
	sp.Endpoints = randomEndpoints(r)
	if r.IntN(3) == 0 {
		sp.SessionAffinityClientIP = true
		sp.AffinityTimeoutSeconds = int32(r.IntN(2) * 60)
	}
	w.randomExternal(r, sp)
	return sp
}

// randomExternal sets NodePort, external and load balancer IPs, source
// ranges and traffic policies, each present or not. Ports, NodePorts and
// addresses come from small pools that include other Services' ClusterIPs
// and the node's NodePort addresses, so that claims collide.
func (w *world) randomExternal(r *rand.Rand, sp *model.ServicePort) {
	sp.NodePort, sp.ExternalIPs, sp.LoadBalancerIPs, sp.SourceRanges = 0, nil, nil, nil
	if r.IntN(2) == 0 {
		sp.NodePort = uint16(30000 + r.IntN(4))
	}
	pool := []netip.Addr{clusterIP4(r.IntN(12)), netip.AddrFrom4([4]byte{198, 51, 100, byte(r.IntN(3))}), w.nodePort[0]}
	if r.IntN(3) == 0 {
		sp.ExternalIPs = []netip.Addr{pool[r.IntN(len(pool))]}
	}
	if r.IntN(3) == 0 {
		sp.LoadBalancerIPs = []netip.Addr{netip.AddrFrom4([4]byte{203, 0, 113, byte(r.IntN(3))}),
			netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(r.IntN(3))})}
		slices.SortFunc(sp.LoadBalancerIPs, netip.Addr.Compare)
		switch r.IntN(4) {
		case 0:
			sp.SourceRanges = []netip.Prefix{} // every range invalid
		case 1:
			sp.SourceRanges = []netip.Prefix{netip.MustParsePrefix("192.168.0.0/16")}
		case 2:
			sp.SourceRanges = []netip.Prefix{netip.MustParsePrefix("192.168.0.0/16"), netip.MustParsePrefix("fd00::/8")}
		}
	}
	// Ports from a small pool too, and sometimes a NodePort number.
	sp.Port = []uint16{80, 81, 30000}[r.IntN(3)]
	sp.ExternalPolicyLocal = r.IntN(2) == 0
	sp.InternalPolicyLocal = r.IntN(3) == 0
}

// randomEndpoints draws from a small address pool so that Services share
// endpoints (and hairpin elements).
func randomEndpoints(r *rand.Rand) []model.Endpoint {
	var eps []model.Endpoint
	for i := r.IntN(4); i > 0; i-- {
		n := byte(r.IntN(6))
		eps = append(eps,
			model.Endpoint{Addr: netip.AddrFrom4([4]byte{10, 244, 0, n}), Port: 8080, Ready: r.IntN(4) > 0, Serving: true, Terminating: r.IntN(3) == 0,
				NodeName: []string{"node", "other"}[r.IntN(2)]},
			model.Endpoint{Addr: netip.AddrFrom16([16]byte{0xfd, 0x44, 15: n}), Port: 8080, Ready: true, NodeName: "node"})
	}
	return eps
}

func servicePortForTest(id uint32, name string, proto v1.Protocol, port uint16, ips ...netip.Addr) *model.ServicePort {
	sp := &model.ServicePort{ID: id, Port: port, Protocol: proto, ClusterIPs: ips}
	sp.Name.Namespace, sp.Name.Name, sp.Name.Protocol = "ns", name, proto
	return sp
}

// TestBuilderIncrementalEqualsBuild drives a Builder through random changes
// and checks after every step that (1) it builds exactly what a fresh Build
// does and (2) the incremental Diff, applied to the fake kernel (nftfake:
// it refuses what the kernel refuses), yields that ruleset. Services
// collide on addresses, ports and NodePorts and IDs are reused, as in a
// real cluster; the States are resolved as the proxier resolves them.
// Most States name the Services changed since the previous one
// (model.Delta), as the proxier's do, and some do not.
func TestBuilderIncrementalEqualsBuild(t *testing.T) {
	testBuilderIncrementalEqualsBuild(t, nftrules.NewBuilder)
}

// The same when the Builder's lists of memos by Service are one: service
// ports of another Service in the list are neither taken nor removed.
func TestBuilderIncrementalEqualsBuildWhenServiceHashesCollide(t *testing.T) {
	testBuilderIncrementalEqualsBuild(t, nftrules.NewBuilderOfCollidingServices)
}

func testBuilderIncrementalEqualsBuild(t *testing.T, newBuilder func() *nftrules.Builder) {
	for seed := uint64(1); seed <= 20; seed++ {
		r := rand.New(rand.NewPCG(seed, 0))
		st := &model.State{NodeName: "node", ClusterCIDRs: clusterCIDRs,
			NodePortIPs: []netip.Addr{nodeAddr4, nodeAddr6, netip.MustParseAddr("127.0.0.1")}}
		w := newWorld(st.NodePortIPs)
		b := newBuilder()
		kernel := nftfake.New()
		var applied *nft.Ruleset
		for step := 0; step < 60; step++ {
			// Up to three changes per Build, as one multi-port Service
			// changes several service ports at once.
			for n := 1 + r.IntN(3); n > 0; n-- {
				w.mutate(r)
			}
			w.state(st, r.IntN(4) > 0)
			got := b.Build(st)
			if g, w := got.Render(), nftrules.Build(st).Render(); g != w {
				t.Fatalf("seed %d step %d: incremental build differs from Build:\n%s\nwant\n%s", seed, step, g, w)
			}
			if err := kernel.Apply(nft.Diff(applied, got)); err != nil {
				t.Fatalf("seed %d step %d: %v", seed, step, err)
			}
			if err := kernel.Compare(got); err != nil {
				t.Fatalf("seed %d step %d: %v", seed, step, err)
			}
			applied = got
		}
	}
}

// TestBuilderDeltaLooksAtNamedServicesOnly: a State that names the
// Services changed since the State built last (model.Delta) is built from
// those alone; the other service ports are taken as unchanged, which is
// what makes a change cost the same among 1,000 or 50,000 Services. A
// State whose Delta does not start from the State built last is built in
// full.
func TestBuilderDeltaLooksAtNamedServicesOnly(t *testing.T) {
	a := servicePortForTest(1, "a", v1.ProtocolTCP, 80, clusterIP4(1))
	b := servicePortForTest(2, "b", v1.ProtocolTCP, 80, clusterIP4(2))
	st1 := &model.State{NodeName: "node", Gen: 1, Services: []*model.ServicePort{a, b}}
	builder := nftrules.NewBuilder()
	builder.Build(st1)

	a2, b2 := *a, *b
	a2.Port, b2.Port = 81, 81
	changed := func(gen, since uint64) *model.State {
		return &model.State{NodeName: "node", Gen: gen, Services: []*model.ServicePort{&a2, &b2},
			Delta: &model.Delta{Since: since, Changed: []types.NamespacedName{a.Name.NamespacedName}}}
	}
	got := builder.Build(changed(2, 1)).Render()
	onlyA := nftrules.Build(&model.State{NodeName: "node", Services: []*model.ServicePort{&a2, b}}).Render()
	if got != onlyA {
		t.Fatalf("with a Delta naming only Service a, got\n%s\nwant a's change alone:\n%s", got, onlyA)
	}
	// Since names a State this Builder did not build last: all of it.
	got = builder.Build(changed(4, 3)).Render()
	if want := nftrules.Build(changed(0, 0)).Render(); got != want {
		t.Fatalf("with a Delta from another State, got\n%s\nwant the full build:\n%s", got, want)
	}
}

// TestBuilderEndpointChangeSharesTheChains: a changed endpoint changes
// elements, not chains, so the new ruleset holds every chain of the
// previous one, the same objects (that it copies no map of the table's
// size to hold them is nft's TestDerivationCopiesNoTableSizedMap).
func TestBuilderEndpointChangeSharesTheChains(t *testing.T) {
	st := scaleState(100, 3)
	builder := nftrules.NewBuilder()
	before := builder.Build(st)
	changeOneEndpoint(st, 50, 1)
	after := builder.Build(st)
	for f, t0 := range before.Tables {
		t1 := after.Tables[f]
		if t1.Chains.Len() != t0.Chains.Len() {
			t.Errorf("%s: %d chains after an endpoint change, %d before", f, t1.Chains.Len(), t0.Chains.Len())
		}
		for name, c := range t0.Chains.All() {
			if t1.Chains.Get(name) != c {
				t.Errorf("%s: an endpoint change replaced chain %s", f, name)
			}
		}
	}
	if tx := nft.Diff(before, after); tx.Objects() == 0 || tx.Objects() > 8 {
		t.Fatalf("endpoint change: %d objects, want a few elements", tx.Objects())
	}
	if got, want := after.Render(), nftrules.Build(st).Render(); got != want {
		t.Fatalf("incremental build differs from Build:\n%s\nwant\n%s", got, want)
	}
}
