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
			putCount(cur, want, fmt.Sprint("k", rng.IntN(4000)), rng.IntN(3))
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

// putCount sets a key's count in k and in the plain map that k should
// equal (0 deletes).
func putCount(k *keyCounts, want map[string]int, key string, c int) {
	k.put(key, c)
	if c == 0 {
		delete(want, key)
	} else {
		want[key] = c
	}
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

// Encoded keys (refKey's 0 byte, then the key's kernel encoding) are
// counted under fixed-size arrays (halved when their halves are equal, as
// hairpin keys are), renderings under strings: over forks the counts are
// still those of a plain map of the refKeys, for every width a set's keys
// encode to (IPv4 address and pair, IPv6 address and pair), and looking a
// key up allocates nothing.
func TestKeyCountsOfEncodedKeysAreThoseOfAPlainMap(t *testing.T) {
	for _, width := range []int{4, 8, 16, 32} {
		rng := rand.New(rand.NewPCG(3, uint64(width)))
		refKey := func() string {
			if rng.IntN(10) == 0 {
				return fmt.Sprint("\x01", rng.IntN(300)) // a rendering
			}
			key := make([]byte, 1+width)
			// Few distinct bytes, some of them 0: keys differing only in
			// what padding would fill.
			for i := 1; i < len(key); i += 1 + rng.IntN(width) {
				key[i] = byte(rng.IntN(3))
			}
			if rng.IntN(3) == 0 { // a pair of one address
				copy(key[1+width/2:], key[1:1+width/2])
			}
			return string(key)
		}
		cur := &keyCounts{}
		want := map[string]int{}
		for step := range 400 {
			for range 1 + rng.IntN(20) {
				putCount(cur, want, refKey(), rng.IntN(3))
			}
			if cur.len() != len(want) {
				t.Fatalf("width %d, step %d: %d keys counted, want %d", width, step, cur.len(), len(want))
			}
			for key, c := range want {
				if cur.get(key) != c || cur.getBytes([]byte(key)) != c {
					t.Fatalf("width %d: get(%q) = %d, getBytes %d, want %d", width, key, cur.get(key), cur.getBytes([]byte(key)), c)
				}
			}
			cur = cur.fork()
		}
		// Under the array of the key's size, pairs under half of it.
		arrays := map[int][2]int{4: {len(cur.k4.base), 0}, 8: {len(cur.k8.base), len(cur.k4.base)},
			16: {len(cur.k16.base), 0}, 32: {len(cur.k32.base), len(cur.k16.base)}}[width]
		if arrays[0] == 0 || (width == 8 || width == 32) && arrays[1] == 0 {
			t.Errorf("width %d: encoded keys not counted under arrays (%v)", width, arrays)
		}
		key := []byte(refKey())
		if allocs := testing.AllocsPerRun(100, func() { cur.getBytes(key) }); allocs != 0 {
			t.Errorf("width %d: getBytes allocates %v times", width, allocs)
		}
	}
}

// The first fork after a cold build, whose top holds nearly every key,
// makes that top the base instead of copying it, under the few keys of
// the older maps: the maps read as before, and the fork allocates no
// more for 100,000 keys than for 1,000.
func TestLayeredForkAfterAColdBuildKeepsItsTop(t *testing.T) {
	perFork := func(n int) uint64 {
		k := &keyCounts{}
		want := map[string]int{}
		for i := range 10 { // the skeleton, then the cold build
			putCount(k, want, fmt.Sprint("skeleton-", i), 1)
		}
		k = k.fork()
		putCount(k, want, "skeleton-3", 0)
		putCount(k, want, "skeleton-4", 2)
		k = k.fork()
		for i := range n {
			putCount(k, want, fmt.Sprint("key-", i), 1)
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		forked := k.fork()
		runtime.ReadMemStats(&after)
		if len(forked.m.base) != len(k.m.top) || len(forked.m.frozen) != 1 || len(forked.m.frozen[0]) != 9 {
			t.Fatalf("fork of a cold build of %d keys: base of %d, %d frozen maps, want the top's %d and the 9 older keys",
				n, len(forked.m.base), len(forked.m.frozen), len(k.m.top))
		}
		checkCounts(t, forked, want)
		checkCounts(t, k, want)
		return after.TotalAlloc - before.TotalAlloc
	}
	small, large := perFork(1000), perFork(100000)
	t.Logf("bytes allocated by the first fork after a cold build: %d at 1k keys, %d at 100k", small, large)
	if large > 2*small+8192 {
		t.Fatalf("the first fork of a cold build of 100k keys allocates %d bytes, of 1k keys %d: it copies the map", large, small)
	}
}
