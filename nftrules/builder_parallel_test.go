package nftrules_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/nftproxy/nftproxy/nftrules"
	"github.com/nftproxy/nftproxy/nftrules/nft"
	"github.com/nftproxy/nftproxy/nftrules/nft/nftfake"
	"github.com/nftproxy/nftproxy/proxier/model"
)

// TestBuildInParallelEqualsSequential: a Build that makes fragments on
// several goroutines (here in chunks of 3 service ports, so that the
// workers run ahead of the placing by many chunks) yields the ruleset a
// sequential Build does, and the fake kernel accepts it. Services collide
// on addresses and ports and share endpoints, as in the randomized
// Builder test. The Builder's memory of each service port is checked by
// the changes that follow.
func TestBuildInParallelEqualsSequential(t *testing.T) {
	for seed := uint64(1); seed <= 5; seed++ {
		r := rand.New(rand.NewPCG(seed, 7))
		st := &model.State{NodeName: "node", ClusterCIDRs: clusterCIDRs,
			NodePortIPs: []netip.Addr{nodeAddr4, nodeAddr6}}
		w := newWorld(st.NodePortIPs)
		for i := range 400 {
			sp := w.randomServicePort(r, w.allocate(), fmt.Sprintf("p%03d", i))
			if i%4 != 0 { // most with a ClusterIP of their own, some colliding
				sp.ClusterIPs[0] = netip.AddrFrom4([4]byte{10, 97, byte(i >> 8), byte(i)})
			}
			w.set(sp)
		}
		for range 200 {
			w.mutate(r)
		}
		w.state(st, false)

		restore := nftrules.SetParallelBuild(math.MaxInt, 128)
		sequential := nftrules.Build(st)
		restore()
		restore = nftrules.SetParallelBuild(1, 3)
		b := nftrules.NewBuilder()
		parallel := b.Build(st)
		restore()

		if len(st.Services) < 200 {
			t.Fatalf("seed %d: only %d service ports: too few chunks to test", seed, len(st.Services))
		}
		if g, w := parallel.Render(), sequential.Render(); g != w {
			t.Fatalf("seed %d: the parallel Build differs from the sequential one:\n%s", seed, lineDiff(w, g))
		}
		kernel := nftfake.New()
		applyTo(t, kernel, nft.Diff(nil, parallel), parallel)

		// What the Builder remembers of each service port is right too:
		// the changes that follow build what a fresh Build does.
		applied := parallel
		for step := range 30 {
			w.mutate(r)
			w.state(st, true)
			got := b.Build(st)
			if g, w := got.Render(), nftrules.Build(st).Render(); g != w {
				t.Fatalf("seed %d, change %d after the parallel Build: differs from Build:\n%s", seed, step, lineDiff(w, g))
			}
			applyTo(t, kernel, nft.Diff(applied, got), got)
			applied = got
		}
	}
}
