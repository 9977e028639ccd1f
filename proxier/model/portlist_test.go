package model

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/types"
)

// A PortList patched at random (Services added, replaced, given more or
// fewer ports, removed) holds what the same patches give on one flat
// sorted slice, finds every Service's ports, keeps each earlier list as it
// was, and never splits a Service between chunks.
func TestPortListPatchesLikeAFlatSlice(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	key := func(i int) types.NamespacedName {
		return types.NamespacedName{Namespace: fmt.Sprint("ns", i%7), Name: fmt.Sprintf("svc-%05d", i)}
	}
	ports := func(k types.NamespacedName) []*ServicePort {
		var out []*ServicePort
		for p := range r.IntN(4) { // 0: the Service is gone
			sp := &ServicePort{}
			sp.Name.NamespacedName, sp.Name.Port = k, fmt.Sprint("p", p)
			out = append(out, sp)
		}
		return out
	}
	const services = 3000
	var flat []*ServicePort
	var keys []types.NamespacedName
	for i := range services {
		keys = append(keys, key(i))
	}
	slices.SortFunc(keys, CompareServices)
	for _, k := range keys {
		flat = append(flat, ports(k)...)
	}
	l := NewPortList(flat)
	type version struct {
		l    *PortList
		flat []*ServicePort
	}
	var history []version
	for step := range 400 {
		var changed []types.NamespacedName
		for range 1 + r.IntN(8) {
			changed = append(changed, key(r.IntN(services+200))) // some new Services
		}
		if step%50 == 49 {
			for range 300 { // a large patch: chunks grow past twice their size
				changed = append(changed, key(services+r.IntN(2000)))
			}
		}
		slices.SortFunc(changed, CompareServices)
		changed = slices.Compact(changed)
		now := map[types.NamespacedName][]*ServicePort{}
		for _, k := range changed {
			now[k] = ports(k)
		}
		get := func(k types.NamespacedName) []*ServicePort { return now[k] }
		flat = PatchSorted(flat, changed, get)
		l = l.Patch(changed, get)
		if got := slices.Collect(l.All()); !slices.Equal(got, flat) || l.Len() != len(flat) {
			t.Fatalf("step %d: %d ports listed (Len %d), want %d", step, len(got), l.Len(), len(flat))
		}
		for _, k := range append(changed, key(r.IntN(services))) {
			if !slices.Equal(l.Of(k), portsOf(flat, k)) {
				t.Fatalf("step %d: Of(%s) = %v, want %v", step, k, l.Of(k), portsOf(flat, k))
			}
		}
		for i, c := range l.chunks {
			if len(c) == 0 || len(c) > 2*chunkSize+3 {
				t.Fatalf("step %d: chunk %d holds %d ports", step, i, len(c))
			}
			if i > 0 && l.chunks[i-1][len(l.chunks[i-1])-1].Name.NamespacedName == c[0].Name.NamespacedName {
				t.Fatalf("step %d: Service %s split between chunks", step, c[0].Name.NamespacedName)
			}
		}
		history = append(history, version{l, flat})
		for _, v := range history[max(0, len(history)-10):] {
			if !slices.Equal(slices.Collect(v.l.All()), v.flat) {
				t.Fatalf("step %d: an earlier list changed", step)
			}
		}
	}
}

// Patching one Service's ports among 50,000 Services shares every chunk but
// the one holding it: the cost of a change does not grow with the list.
func TestPortListPatchSharesUnchangedChunks(t *testing.T) {
	var flat []*ServicePort
	for i := range 50000 {
		sp := &ServicePort{}
		sp.Name.NamespacedName = types.NamespacedName{Namespace: "bench", Name: fmt.Sprintf("svc-%05d", i)}
		flat = append(flat, sp)
	}
	l := NewPortList(flat)
	k := flat[25000].Name.NamespacedName
	repl := &ServicePort{}
	repl.Name.NamespacedName = k
	next := l.Patch([]types.NamespacedName{k}, func(types.NamespacedName) []*ServicePort { return []*ServicePort{repl} })
	if len(next.chunks) != len(l.chunks) {
		t.Fatalf("%d chunks after the patch, %d before", len(next.chunks), len(l.chunks))
	}
	copied := 0
	for i := range l.chunks {
		if &next.chunks[i][0] != &l.chunks[i][0] {
			copied++
		}
	}
	if copied != 1 || next.Of(k)[0] != repl || l.Of(k)[0] != flat[25000] {
		t.Fatalf("%d of %d chunks copied for one Service (want 1), or the lists hold the wrong port", copied, len(l.chunks))
	}
}
