package nft

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"testing"
)

// A ByName put, deleted and forked at random reads like a plain map in
// every fork, old ones included: Get, Len, All and Keys.
func TestByNameForksLikeCopiesOfAPlainMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	type version struct {
		b    *ByName[*Chain]
		want map[string]*Chain
	}
	cur, want := &ByName[*Chain]{}, map[string]*Chain{}
	var history []version
	for step := range 2000 {
		for range 1 + rng.IntN(5) {
			name := fmt.Sprint("c", rng.IntN(500))
			if rng.IntN(3) == 0 {
				cur.Delete(name)
				delete(want, name)
			} else {
				c := &Chain{Name: name}
				cur.Put(name, c)
				want[name] = c
			}
		}
		history = append(history, version{cur, maps.Clone(want)})
		if step%100 == 99 {
			for _, v := range history[max(0, len(history)-20):] {
				checkByName(t, v.b, v.want)
			}
		}
		next := cur.fork()
		cur = &next
	}
	checkByName(t, cur, want)
}

func checkByName(t *testing.T, b *ByName[*Chain], want map[string]*Chain) {
	t.Helper()
	if b.Len() != len(want) {
		t.Fatalf("Len %d, want %d", b.Len(), len(want))
	}
	if got := maps.Collect(b.All()); !maps.Equal(got, want) {
		t.Fatalf("All: %d names, want %d", len(got), len(want))
	}
	keys := 0
	for name := range b.Keys() {
		keys++
		if want[name] == nil {
			t.Fatalf("Keys yields %s, deleted", name)
		}
	}
	if keys != len(want) {
		t.Fatalf("Keys yields %d names, want %d", keys, len(want))
	}
	for i := range 500 {
		name := fmt.Sprint("c", i)
		if b.Get(name) != want[name] || b.getBytes([]byte(name)) != want[name] {
			t.Fatalf("Get(%s) = %v, want %v", name, b.Get(name), want[name])
		}
	}
}
