package dump

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/nftproxy/nftproxy/nftrules"
	"github.com/nftproxy/nftproxy/nftrules/nft"
)

// resolution is what a chain leads to.
type resolution struct {
	endpoints       []Endpoint
	m               string
	firstKey        uint32
	drop            bool
	sourceDependent bool
	affinity        int
	problems        []string
}

// resolver follows the chains of one table. The table, its parsed rules
// and its map indexes are read-only, shared by resolvers working in
// parallel; each has its own memo.
type resolver struct {
	t        *nft.Table
	rules    map[string][]nft.Rule // nil Stmts: unreadable rule
	resolved map[string]*resolution
	walked   map[string][]walkedSpan // index map -> ranges read
}

// walkedSpan is a range of keys a chain reads, offset..offset+count-1,
// of which found are in the map.
type walkedSpan struct{ offset, count, found uint32 }

// resolveAll follows the chains the dispatch elements send traffic to
// and reads their names, in parts on the cores, each part with its own
// memo (a chain two parts reach is followed twice, alike) and its own
// record of the map ranges read.
func (w *resolver) resolveAll(ds []dispatch) {
	parts := partsOf(len(ds))
	done := make([]*resolver, len(parts))
	eachPart(parts, func(i int, p part) {
		pw := &resolver{t: w.t, rules: w.rules, resolved: map[string]*resolution{}, walked: map[string][]walkedSpan{}}
		for j := p.lo; j < p.hi; j++ {
			if d := &ds[j]; d.chain != "" {
				pw.resolve(d.chain, 0)
				d.named = parseChainName(d.chain)
			}
		}
		done[i] = pw
	})
	w.resolved, w.walked = done[0].resolved, done[0].walked
	for _, pw := range done[1:] {
		for chain, r := range pw.resolved {
			if _, ok := w.resolved[chain]; !ok {
				w.resolved[chain] = r
			}
		}
		for m, spans := range pw.walked {
			w.walked[m] = append(w.walked[m], spans...)
		}
	}
}

// maxDepth bounds chain recursion (our layout is at most three deep).
const maxDepth = 8

// resolve follows a chain to every endpoint it may DNAT to: endpoint map
// ranges (numgen ... map @endpoints-*), endpoint-chain map ranges
// (numgen ... vmap @endpoint-chains-*), single DNATs (session affinity's
// endpoint chains) and the chains it goes to.
func (w *resolver) resolve(chain string, depth int) *resolution {
	if r, ok := w.resolved[chain]; ok {
		return r
	}
	r := &resolution{}
	w.resolved[chain] = r
	rules, ok := w.rules[chain]
	if !ok {
		r.problems = append(r.problems, fmt.Sprintf("chain %s does not exist", chain))
		return r
	}
	if depth > maxDepth {
		r.problems = append(r.problems, fmt.Sprintf("chain %s: chains nested too deep", chain))
		return r
	}
	// A chain leads to a handful of endpoints: a linear search finds
	// duplicates at less cost than a map per chain, up to a point.
	var seen map[Endpoint]bool
	add := func(eps ...Endpoint) {
		for _, e := range eps {
			switch {
			case seen != nil:
				if seen[e] {
					continue
				}
				seen[e] = true
			case slices.Contains(r.endpoints, e):
				continue
			case len(r.endpoints) == 32:
				seen = make(map[Endpoint]bool, 64)
				for _, o := range r.endpoints {
					seen[o] = true
				}
				seen[e] = true
			}
			r.endpoints = append(r.endpoints, e)
		}
	}
	merge := func(sub *resolution) {
		add(sub.endpoints...)
		r.drop = r.drop || sub.drop
		r.sourceDependent = r.sourceDependent || sub.sourceDependent
		r.affinity = max(r.affinity, sub.affinity)
		r.problems = append(r.problems, sub.problems...)
	}
	for i, rule := range rules {
		if rule.Stmts == nil {
			r.problems = append(r.problems, fmt.Sprintf("chain %s rule %d is not nftproxy's", chain, i+1))
			continue
		}
		for j, s := range rule.Stmts {
			switch s := s.(type) {
			case nft.MatchPrefix, nft.MatchFibSaddrLocal:
				r.sourceDependent = true
			case nft.DNATToEndpoint:
				if j == 0 {
					r.problems = append(r.problems, fmt.Sprintf("chain %s: dnat without a meta l4proto match", chain))
				}
				r.endpoints = slices.Grow(r.endpoints, int(min(s.Count, 256)))
				w.mapRange(r, s.Map, s.Offset, s.Count, func(key uint32, e nft.Element) {
					if len(e.Data) != 2 || !e.Data[0].Addr.IsValid() || e.Data[1].Num > 0xffff {
						r.problems = append(r.problems, fmt.Sprintf("@%s entry %d has value %q", s.Map, key, e.ValueString()))
						return
					}
					add(Endpoint{Address: e.Data[0].Addr.String(), Port: uint16(e.Data[1].Num)})
				})
			case nft.NumgenVmap:
				w.mapRange(r, s.Map, s.Offset, s.Count, func(key uint32, e nft.Element) {
					if e.Verdict == nil || e.Verdict.Chain == "" {
						r.problems = append(r.problems, fmt.Sprintf("@%s entry %d has verdict %q", s.Map, key, e.ValueString()))
						return
					}
					merge(w.resolve(e.Verdict.Chain, depth+1))
				})
			case nft.DNATTo:
				add(Endpoint{Address: s.To.Addr().String(), Port: s.To.Port()})
			case nft.UpdateSourceSet:
				if set := w.t.Sets.Get(s.Set); set != nil && set.Timeout > 0 {
					r.affinity = max(r.affinity, int(set.Timeout.Seconds()))
				}
			case nft.VerdictStmt:
				switch {
				case s.Kind == nft.Drop:
					r.drop = true
				case s.Chain == "" || s.Chain == nftrules.ChainMarkForMasquerade || s.Chain == nftrules.ChainReject:
				default:
					merge(w.resolve(s.Chain, depth+1))
				}
			}
		}
	}
	return r
}

// mapRange calls fn for entries offset..offset+count-1 of a map (with the
// entry's value, not its key), noting the first range as the frontend's
// map and reporting missing entries.
func (w *resolver) mapRange(r *resolution, name string, offset, count uint32, fn func(uint32, nft.Element)) {
	if r.m == "" {
		r.m, r.firstKey = name, offset
	}
	m := w.t.Sets.Get(name)
	if m == nil {
		r.problems = append(r.problems, fmt.Sprintf("map @%s does not exist", name))
		return
	}
	if count > nftrules.MaxEndpoints {
		// Not a rule of ours (the text is read back from the kernel):
		// walking four billion keys would never end.
		r.problems = append(r.problems, fmt.Sprintf("numgen random mod %d into @%s: more than the %d endpoints of a service port", count, name, nftrules.MaxEndpoints))
		return
	}
	found := uint32(0)
	for i := range count {
		key := offset + i
		data, verdict, ok := m.Get(nft.NumValue(key))
		if !ok {
			r.problems = append(r.problems, fmt.Sprintf("@%s has no entry %d (want %d..%d)", name, key, offset, offset+count-1))
			continue
		}
		found++
		fn(key, nft.Element{Data: data, Verdict: verdict})
	}
	w.walked[name] = append(w.walked[name], walkedSpan{offset: offset, count: count, found: found})
}

// entriesUsed counts the distinct entries of m that spans found: the sum
// of their finds when they are disjoint (our layout: a block of keys per
// service port and family, which a chain reached twice reads twice), else
// a lookup of every key of their union.
func entriesUsed(m *nft.Set, spans []walkedSpan) int {
	slices.SortFunc(spans, func(a, b walkedSpan) int {
		return cmp.Or(cmp.Compare(a.offset, b.offset), cmp.Compare(a.count, b.count))
	})
	spans = slices.Compact(spans)
	used, disjoint := 0, true
	for i, sp := range spans {
		if i > 0 && uint64(sp.offset) < end(spans[i-1]) {
			disjoint = false
			break
		}
		used += int(sp.found)
	}
	if disjoint {
		return used
	}
	used = 0
	next := uint64(0) // the first key not yet counted
	for _, sp := range spans {
		for k := max(uint64(sp.offset), next); k < end(sp); k++ {
			if _, _, ok := m.Get(nft.NumValue(uint32(k))); ok {
				used++
			}
		}
		next = max(next, end(sp))
	}
	return used
}

// end is the key after a span's last.
func end(sp walkedSpan) uint64 { return uint64(sp.offset) + uint64(sp.count) }
