package nft

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"runtime"
	"testing"
)

// The key counts of a set after random changes over a chain of forks are
// those of a plain map, in every ruleset of the chain: a fork's changes
// never show in its parent, and merges (of frozen maps, and into a new
// base) lose nothing and resurrect no deleted key; the changes kept above
// the base never exceed an eighth of it (plus a constant).
func TestLayeredMapsForkLikeCopiesOfAPlainMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	type version struct {
		k    *keyCounts
		want map[string]int
	}
	cur := &keyCounts{}
	want := map[string]int{}
	var history []version
	for step := range 3000 {
		// Mostly a few keys per ruleset, sometimes many (a fold).
		changes := 1 + rng.IntN(6)
		if rng.IntN(200) == 0 {
			changes = 3000
		}
		for range changes {
			key := fmt.Sprint("k", rng.IntN(4000))
			c := rng.IntN(3) // 0 deletes
			cur.put(key, c)
			if c == 0 {
				delete(want, key)
			} else {
				want[key] = c
			}
		}
		history = append(history, version{cur, maps.Clone(want)})
		if step%100 == 99 {
			for _, v := range history[max(0, len(history)-50):] {
				checkCounts(t, v.k, v.want)
			}
		}
		cur = cur.fork()
		// What waits above the base stays within an eighth of it.
		above := len(cur.m.top)
		for _, m := range cur.m.frozen {
			above += len(m)
		}
		if above != cur.m.upper || above > maxUpper(len(cur.m.base)) {
			t.Fatalf("fork %d: %d entries above a base of %d (counted %d), at most %d allowed",
				step, above, len(cur.m.base), cur.m.upper, maxUpper(len(cur.m.base)))
		}
	}
	checkCounts(t, cur, want)
}

func checkCounts(t *testing.T, k *keyCounts, want map[string]int) {
	t.Helper()
	if k.len() != len(want) {
		t.Fatalf("%d keys counted, want %d", k.len(), len(want))
	}
	got := map[string]int{}
	k.m.each(func(key string, c count) { got[key] = int(c) })
	if !maps.Equal(got, want) {
		t.Fatalf("each: %d keys, want %d (first difference among %v)", len(got), len(want), diffKeys(got, want))
	}
	for key, c := range want {
		if k.get(key) != c || k.getBytes([]byte(key)) != c {
			t.Fatalf("get(%s) = %d, getBytes %d, want %d", key, k.get(key), k.getBytes([]byte(key)), c)
		}
	}
}

func diffKeys(a, b map[string]int) []string {
	var out []string
	for k, v := range a {
		if b[k] != v {
			out = append(out, k)
		}
	}
	for k, v := range b {
		if a[k] != v {
			out = append(out, k)
		}
	}
	return out[:min(len(out), 5)]
}

// A fork that changes a few keys of a large set allocates, on average over
// many forks, far less than a copy of the set, or of the overlay of
// 64 + 16·√n entries the maps were before: the cost of an endpoint change
// must not grow with the number of Services.
func TestLayeredForkCostDoesNotGrowWithTheMap(t *testing.T) {
	perFork := func(n int) float64 {
		k := &keyCounts{}
		for i := range n {
			k.put(fmt.Sprint("key-", i), 1)
		}
		k = k.fork() // the cold build's fold
		var before, after runtime.MemStats
		const forks = 2000
		runtime.ReadMemStats(&before)
		for i := range forks {
			k = k.fork()
			for j := range 4 {
				key := fmt.Sprint("key-", (i*4+j)%n)
				k.put(key, k.get(key)+1)
			}
		}
		runtime.ReadMemStats(&after)
		return float64(after.TotalAlloc-before.TotalAlloc) / forks
	}
	small, large := perFork(2000), perFork(200000)
	t.Logf("bytes allocated per fork: %.0f at 2k keys, %.0f at 200k", small, large)
	// The overlay copy averaged ~3,600 entries (~150 KB) at 200k keys.
	if large > 2*small+8192 {
		t.Fatalf("a fork of a 200k-key map allocates %.0f bytes, of a 2k-key map %.0f: grows with the map", large, small)
	}
}
