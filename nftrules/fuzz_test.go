package nftrules_test

import (
	"cmp"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"sync"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/nftproxy/nftproxy/nftrules"
	"github.com/nftproxy/nftproxy/nftrules/nft"
	"github.com/nftproxy/nftproxy/nftrules/nft/nftfake"
	"github.com/nftproxy/nftproxy/nftrules/trace"
	"github.com/nftproxy/nftproxy/proxier/claims"
	"github.com/nftproxy/nftproxy/proxier/model"
)

// The fuzz targets of this file drive the randomized world of
// builder_test.go (colliding claims resolved through proxier/claims, IDs
// reused lowest-first) with the fuzzer's bytes instead of a seeded PRNG:
// byteSource turns each byte into one random choice, so the fuzzer's
// mutations are mutations of the operation sequence. Inputs worth keeping
// are in testdata/fuzz/<FuzzName>/ and run with every `go test`.

// byteSource is a rand.Source reading the fuzzer's bytes: each Uint64 takes
// one byte and puts it in both the high bits (IntN of any n takes the high
// bits of x*n) and the low bits (IntN of a power of two masks the low
// bits), so that byte decides one IntN(n) for n up to 256. Past the end of
// the input it goes on with a fixed PCG, so every input decodes completely
// and deterministically.
type byteSource struct {
	data []byte
	rest *rand.PCG
}

func (s *byteSource) Uint64() uint64 {
	if len(s.data) == 0 {
		return s.rest.Uint64()
	}
	b := uint64(s.data[0])
	s.data = s.data[1:]
	return b<<56 | 1<<55 | b
}

func fuzzRand(data []byte) (*rand.Rand, *byteSource) {
	src := &byteSource{data: data, rest: rand.NewPCG(1, 2)}
	return rand.New(src), src
}

// fuzzSeeds returns inputs made of PRNG bytes: sequences of every kind of
// operation, as starting points for the fuzzer.
func fuzzSeeds() [][]byte {
	var out [][]byte
	for i, n := range []int{0, 8, 64, 256, 1024} {
		r := rand.New(rand.NewPCG(uint64(i), 7))
		b := make([]byte, n)
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		out = append(out, b)
	}
	return out
}

// fuzzNodePortIPs are the NodePort address lists a fuzzed node has.
var fuzzNodePortIPs = [][]netip.Addr{
	{nodeAddr4, nodeAddr6, netip.MustParseAddr("127.0.0.1")},
	{nodeAddr4},
	{nodeAddr6, netip.MustParseAddr("192.168.50.2")},
	{netip.MustParseAddr("198.51.100.1"), nodeAddr4}, // an address the world's externalIPs use
}

// fuzzWorld starts a world and its State from the input's first bytes:
// where the service port IDs start (at an endpoint-map shard boundary, or
// just below the largest ID, so that later ones are out of range) and the
// node's configuration.
func fuzzWorld(r *rand.Rand) (*fuzzedWorld, *model.State) {
	st := &model.State{NodeName: "node", ClusterCIDRs: clusterCIDRs, NodePortIPs: fuzzNodePortIPs[r.IntN(len(fuzzNodePortIPs))]}
	w := &fuzzedWorld{world: newWorld(st.NodePortIPs)}
	if r.IntN(4) == 0 { // --deny-external-ips-on-node-addresses
		w.deny = true
		w.claims = claims.New(claims.Options{DenyNodeAddresses: true})
		w.claims.SetNodeAddresses(st.NodePortIPs, st.NodePortIPs)
	}
	w.nextID = []uint32{0, nftrules.ServicePortsPerEndpointMap - 2, nftrules.MaxServicePortID - 2}[r.IntN(3)]
	for n := r.IntN(3); n > 0; n-- {
		reconfigure(r, st, w.world)
	}
	return w, st
}

// fuzzedWorld is a world whose resolver may deny node addresses.
type fuzzedWorld struct {
	*world
	deny bool
}

// reconfigure changes one setting of the node: every fragment depends on
// them, so the Builder starts again and Diff compares whole tables (a
// family may appear or go away).
func reconfigure(r *rand.Rand, st *model.State, w *world) {
	switch r.IntN(6) {
	case 0:
		st.MasqueradeAll = !st.MasqueradeAll
	case 1:
		st.ClusterCIDRs = [][]netip.Prefix{nil, clusterCIDRs, clusterCIDRs[:1], clusterCIDRs[1:],
			{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}}[r.IntN(5)]
	case 2:
		st.NoIPv6 = !st.NoIPv6
	case 3:
		st.NodePortIPs = fuzzNodePortIPs[r.IntN(len(fuzzNodePortIPs))]
		w.nodePort = st.NodePortIPs
		w.claims.SetNodeAddresses(st.NodePortIPs, st.NodePortIPs)
	case 4:
		st.NodeName = []string{"node", "other", ""}[r.IntN(3)]
	case 5:
		st.NodeZone = []string{"", "z1"}[r.IntN(2)]
	}
}

// step changes the world as one sync of the proxier sees it: a few service
// ports added, removed or changed, a service port replaced by an equal
// value or given topology hints, or the node reconfigured.
func step(r *rand.Rand, st *model.State, w *world) {
	switch op := r.IntN(10); {
	case op == 0:
		reconfigure(r, st, w)
	case op <= 2 && len(w.raw) > 0:
		names := slices.SortedFunc(maps.Keys(w.raw), func(a, b types.NamespacedName) int { return cmp.Compare(a.Name, b.Name) })
		c := *w.raw[names[r.IntN(len(names))]] // a new value (the proxier's contract)
		if op == 2 {
			c.Endpoints = slices.Clone(c.Endpoints)
			for i := range c.Endpoints {
				e := &c.Endpoints[i]
				e.Hints = model.NewHints([][]string{nil, {"z1"}, {"z2"}, {"z1", "z2"}}[r.IntN(4)], [][]string{nil, {"node"}, {"other"}}[r.IntN(3)])
			}
		}
		w.set(&c)
	default:
		for n := 1 + r.IntN(3); n > 0; n-- {
			w.mutate(r)
		}
	}
	w.state(st, true)
}

// fuzzWorlds runs fn, as a fuzz target, on a world and State decoded from
// the fuzzer's bytes (fuzzWorld); r and src go on with the rest.
func fuzzWorlds(f *testing.F, fn func(t *testing.T, r *rand.Rand, src *byteSource, w *fuzzedWorld, st *model.State)) {
	for _, seed := range fuzzSeeds() {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, src := fuzzRand(data)
		w, st := fuzzWorld(r)
		fn(t, r, src, w, st)
	})
}

// checkClaims checks what proxier/claims guarantees Build: no two service
// ports share a dispatch key (address . protocol . port) or a NodePort, no
// external or load balancer IP is a NodePort address on another service
// port's NodePort, and with deny none is a node address. (Build keeps one
// element per key, so a conflict could go unnoticed in the ruleset: the
// kernel would refuse it, or one Service would capture the other's
// traffic.)
func checkClaims(t *testing.T, st *model.State, deny bool) {
	t.Helper()
	owner := map[string]model.ServicePortName{}
	claim := func(sp *model.ServicePort, key string) {
		if o, ok := owner[key]; ok && o != sp.Name {
			t.Fatalf("%s claimed by %v and %v", key, o, sp.Name)
		}
		owner[key] = sp.Name
	}
	nodePortKey := func(proto v1.Protocol, port uint16) string { return fmt.Sprintf("nodePort %d/%s", port, proto) }
	for _, sp := range st.Services {
		for _, ip := range slices.Concat(sp.ClusterIPs, sp.ExternalIPs, sp.LoadBalancerIPs) {
			claim(sp, netip.AddrPortFrom(ip, sp.Port).String()+"/"+string(sp.Protocol))
		}
		if sp.NodePort != 0 {
			claim(sp, nodePortKey(sp.Protocol, sp.NodePort))
		}
	}
	for _, sp := range st.Services {
		for _, ip := range slices.Concat(sp.ExternalIPs, sp.LoadBalancerIPs) {
			if !slices.Contains(st.NodePortIPs, ip) {
				continue
			}
			if o, ok := owner[nodePortKey(sp.Protocol, sp.Port)]; ok && o != sp.Name {
				t.Fatalf("%v: external address %s:%d is the NodePort of %v on this node", sp.Name, ip, sp.Port, o)
			}
			if deny {
				t.Fatalf("%v: external address %s is a node address", sp.Name, ip)
			}
		}
	}
}

// FuzzBuilderIncremental: after every step of a fuzzed sequence of
// changes, the Builder's ruleset renders as a fresh Build, and the
// incremental Diff from the previous ruleset, applied to the fake kernel
// (nftfake) holding it, is accepted and yields the new one; at the end, Diff
// of the last ruleset and a fresh Build is empty.
func FuzzBuilderIncremental(f *testing.F) {
	fuzzWorlds(f, func(t *testing.T, r *rand.Rand, src *byteSource, w *fuzzedWorld, st *model.State) {
		b := nftrules.NewBuilder()
		kernel := nftfake.New()
		var applied *nft.Ruleset
		for i := 0; i < 40 && (i == 0 || len(src.data) > 0); i++ {
			step(r, st, w.world)
			checkClaims(t, st, w.deny)
			got := b.Build(st)
			if g, want := got.Render(), nftrules.Build(st).Render(); g != want {
				t.Fatalf("step %d: incremental build differs from Build:\n%s", i, lineDiff(want, g))
			}
			applyTo(t, kernel, nft.Diff(applied, got), got)
			applied = got
		}
		if tx := nft.Diff(applied, nftrules.Build(st)); !tx.Empty() {
			t.Fatalf("Diff of equal rulesets: %v", opSummary(tx))
		}
	})
}

// FuzzDiff: for two fuzzed States a and b (b is a after more changes,
// perhaps of the node's configuration too), Diff(Build(a), Build(b))
// applied to the fake kernel (nftfake) holding Build(a) is accepted and
// yields Build(b); so do the Builder's incremental Diff and the Diff of a full
// sync (from a as read back from the kernel); Diff of equal rulesets is
// empty; every rule Build renders parses back into itself; and the packet
// tracer finds b's ruleset consistent.
func FuzzDiff(f *testing.F) {
	fuzzWorlds(f, func(t *testing.T, r *rand.Rand, _ *byteSource, w *fuzzedWorld, st *model.State) {
		for n := r.IntN(16); n > 0; n-- {
			step(r, st, w.world)
		}
		w.state(st, true)
		a := *st // step replaces st.Services and the config slices, never edits them
		for n := r.IntN(16); n > 0; n-- {
			step(r, st, w.world)
		}
		b := *st
		checkClaims(t, &a, w.deny)
		checkClaims(t, &b, w.deny)

		ra, rb := nftrules.Build(&a), nftrules.Build(&b)
		for _, tc := range []struct {
			name string
			x, y *nft.Ruleset
		}{{"a", ra, ra}, {"b", rb, rb}, {"a, built twice", ra, nftrules.Build(&a)}, {"b, built twice", rb, nftrules.Build(&b)}} {
			if tx := nft.Diff(tc.x, tc.y); !tx.Empty() {
				t.Fatalf("Diff of equal rulesets (%s): %v", tc.name, opSummary(tx))
			}
		}

		kernel := nftfake.New()
		applyTo(t, kernel, nft.Diff(nil, ra), ra)
		applyTo(t, kernel, nft.Diff(ra, rb), rb)

		// A full sync: live is what the kernel holding a hands back.
		resync := nftfake.New()
		applyTo(t, resync, nft.Diff(nil, ra), ra)
		live, err := resync.ReadLive()
		if err != nil {
			t.Fatal(err)
		}
		if tx := nft.Diff(live, ra); !tx.Empty() {
			t.Fatalf("Diff of a read back from the kernel and a: %v", opSummary(tx))
		}
		applyTo(t, resync, nft.Diff(live, rb), rb)

		builder := nftrules.NewBuilder()
		pa := builder.Build(&a)
		pb := builder.Build(&b)
		incremental := nftfake.New()
		applyTo(t, incremental, nft.Diff(nil, pa), ra)
		applyTo(t, incremental, nft.Diff(pa, pb), rb)

		checkRulesRoundTrip(t, rb)
		checkTraces(t, &b, rb)
	})
}

// checkTraces follows first packets from a pod, an outsider and the node
// to every address and NodePort of every service port: the tracer must
// find the ruleset consistent (no missing chain, set or endpoint entry,
// no dnat without its protocol match, no jump loop).
func checkTraces(t *testing.T, st *model.State, rs *nft.Ruleset) {
	t.Helper()
	srcs := map[nft.Family][]netip.Addr{
		nft.IPv4: {netip.MustParseAddr("10.244.1.1"), netip.MustParseAddr("203.0.113.200"), nodeAddr4},
		nft.IPv6: {netip.MustParseAddr("fd44::1"), netip.MustParseAddr("2001:db8::200"), nodeAddr6},
	}
	paths := []trace.Path{trace.FromPod, trace.Forwarded, trace.LocalOut}
	run := func(pkt trace.Packet) {
		if _, ok := rs.Tables[nft.FamilyOf(pkt.Dst)]; !ok {
			return
		}
		if _, err := trace.Trace(rs, pkt); err != nil {
			t.Fatal(err)
		}
	}
	for _, sp := range st.Services {
		proto, _ := nftrules.ProtocolOf(sp.Protocol)
		for _, ip := range slices.Concat(sp.ClusterIPs, sp.ExternalIPs, sp.LoadBalancerIPs) {
			for i, src := range srcs[nft.FamilyOf(ip)] {
				run(trace.Packet{Src: src, Dst: ip, Proto: proto, DstPort: sp.Port, Path: paths[i]})
			}
		}
		for _, ip := range st.NodePortIPs {
			if sp.NodePort != 0 {
				run(trace.Packet{Src: srcs[nft.FamilyOf(ip)][1], Dst: ip, Proto: proto, DstPort: sp.NodePort, Path: trace.ToLocal})
			}
		}
	}
}

// eachRule calls fn for every rule of rs, by family and chain name.
func eachRule(rs *nft.Ruleset, fn func(f nft.Family, c *nft.Chain, r nft.Rule)) {
	for _, f := range rs.SortedFamilies() {
		for _, c := range rs.Tables[f].SortedChains() {
			for _, r := range c.Rules {
				fn(f, c, r)
			}
		}
	}
}

// checkRulesRoundTrip checks ParseRule(f, r.Render(f)) == r for every rule
// of rs and returns how many there are.
func checkRulesRoundTrip(t testing.TB, rs *nft.Ruleset) int {
	t.Helper()
	n := 0
	eachRule(rs, func(f nft.Family, c *nft.Chain, r nft.Rule) {
		n++
		text := r.Render(f)
		got, err := nft.ParseRule(f, text)
		if err != nil {
			t.Errorf("%s chain %s: %v", f, c.Name, err)
		} else if !reflect.DeepEqual(got, r) {
			t.Errorf("%s chain %s: ParseRule(%q) = %#v, want %#v", f, c.Name, text, got, r)
		}
	})
	return n
}

// FuzzParseRule: ParseRule never panics on any text; what it accepts
// renders into a text it parses back into the same rule, and the packet
// tracer follows it without panicking. The seeds are the
// rules Build renders for the rich States of parse_test.go and for fuzzed
// worlds, and the foreign texts ParseRule must refuse.
func FuzzParseRule(f *testing.F) {
	add := func(rs *nft.Ruleset) {
		eachRule(rs, func(fam nft.Family, _ *nft.Chain, r nft.Rule) {
			f.Add(fam == nft.IPv6, r.Render(fam))
		})
	}
	add(nftrules.Build(richState(false)))
	add(nftrules.Build(richState(true)))
	for _, seed := range fuzzSeeds() {
		r, _ := fuzzRand(seed)
		w, st := fuzzWorld(r)
		for n := 0; n < 8; n++ {
			step(r, st, w.world)
		}
		add(nftrules.Build(st))
	}
	for _, text := range []string{"", "ip6 saddr fd00::1 accept", "meta mark & 0x4000 == 0x00000000", "tcp dport 80 accept", "jump"} {
		f.Add(false, text)
	}
	f.Fuzz(func(t *testing.T, v6 bool, text string) {
		fam := nft.IPv4
		if v6 {
			fam = nft.IPv6
		}
		rule, err := nft.ParseRule(fam, text)
		if err != nil {
			return
		}
		rendered := rule.Render(fam)
		again, err := nft.ParseRule(fam, rendered)
		if err != nil {
			t.Fatalf("ParseRule(%q) = %#v renders as %q, which does not parse: %v", text, rule, rendered, err)
		}
		if !reflect.DeepEqual(again, rule) || again.Render(fam) != rendered {
			t.Fatalf("ParseRule(%q) = %#v renders as %q, which parses as %#v", text, rule, rendered, again)
		}
		// What ParseRule accepts from a kernel, --trace evaluates: it may
		// fail, but not panic.
		rs := withFirstRule(traceRuleset(), fam, nftrules.ChainServices, rule)
		for _, pkt := range tracePackets[fam] {
			_, _ = trace.Trace(rs, pkt)
		}
	})
}

// traceRuleset is the ruleset FuzzParseRule puts the parsed rule in.
var traceRuleset = sync.OnceValue(func() *nft.Ruleset { return nftrules.Build(richState(false)) })

// tracePackets reach the services chain of richState's ruleset.
var tracePackets = map[nft.Family][]trace.Packet{
	nft.IPv4: {podSends("10.1.0.2", "tcp", "172.30.0.10:80"), nodeSends("udp", "172.30.0.53:53")},
	nft.IPv6: {outsiderSends("2001:db8::1", "tcp", "[fd00:30::10]:443")},
}

// withFirstRule returns a copy of rs (sharing everything else with it)
// whose chain starts with r.
func withFirstRule(rs *nft.Ruleset, f nft.Family, chain string, r nft.Rule) *nft.Ruleset {
	out := nft.NewRuleset()
	for fam, t := range rs.Tables {
		c := &nft.Table{Family: t.Family, Name: t.Name, Sets: t.Sets} // sets only read
		for name, ch := range t.Chains.All() {
			c.Chains.Put(name, ch)
		}
		out.Tables[fam] = c
	}
	c := *out.Tables[f].Chains.Get(chain)
	c.Rules = append([]nft.Rule{r}, c.Rules...)
	out.Tables[f].Chains.Put(chain, &c)
	return out
}
