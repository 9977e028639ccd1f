package nft

import (
	"fmt"
	"runtime"
	"testing"
)

// TestDerivationCopiesNoTableSizedMap: a Derivation that changes one
// set's elements and rewrites one chain allocates as much in a table of
// 20,000 sets and chains as in one of 1,000: it forks the tables' chains
// and sets instead of copying their maps (a copy of the 20,000-entry maps
// is more than a megabyte).
func TestDerivationCopiesNoTableSizedMap(t *testing.T) {
	small, large := bytesPerChange(1000), bytesPerChange(20000)
	t.Logf("bytes allocated per change: %d among 1,000 sets and chains, %d among 20,000", small, large)
	if large > small+small/2 {
		t.Fatalf("a change among 20,000 sets and chains allocates %d bytes, among 1,000 %d: it copies maps of the table's size", large, small)
	}
}

// bytesPerChange returns the bytes a Derivation allocates, on average,
// to change one set's elements and one chain's rules in a table of n sets
// and n chains, each Derivation deriving from the last as a Builder does.
func bytesPerChange(n int) uint64 {
	newSet := func(_ Family, name string) *Set { return &Set{Name: name, Key: []Datatype{TypeInetService}} }
	port := func(i int) []Element { return []Element{{Key: []Value{NumValue(uint32(i % 65536))}}} }
	chain := func(i, version int) *Chain {
		return &Chain{Name: fmt.Sprint("chain-", i), Rules: []Rule{{Stmts: []Stmt{Opaque{Text: fmt.Sprint("counter comment v", version)}}}}}
	}
	rs := NewRuleset()
	rs.Table(IPv4)
	d := rs.Derive()
	for i := range n {
		d.SetGroup(IPv4, fmt.Sprint("set-", i), "owner", port(i), newSet)
		d.PutChain(IPv4, chain(i, 0))
	}
	rs = d.Ruleset()
	change := func(round int) {
		d := rs.Derive()
		d.SetGroup(IPv4, "set-7", "owner", port(round), newSet)
		d.PutChain(IPv4, chain(7, round))
		rs = d.Ruleset()
	}
	// The first fork after a cold build makes the table's base maps.
	change(1)
	change(2)
	const rounds = 100
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for round := range rounds {
		change(3 + round)
	}
	runtime.ReadMemStats(&after)
	return (after.TotalAlloc - before.TotalAlloc) / rounds
}
