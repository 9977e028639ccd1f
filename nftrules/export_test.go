package nftrules

import "github.com/nftproxy/nftproxy/nftrules/nft"

// LiveCopy returns rs as readLive reads it back from a kernel holding it:
// each rule is the identity kept in its user data (Opaque), sets are flat
// (their elements Put, no owners), affinity sets hold no elements. Diff
// takes such a ruleset as live at every full sync.
func LiveCopy(rs *nft.Ruleset) *nft.Ruleset {
	out := nft.NewRuleset()
	for f, t := range rs.Tables {
		lt := out.Table(f)
		for name, c := range t.Chains {
			lc := lt.Chain(name)
			if c.Base != nil {
				b := *c.Base
				lc.Base = &b
			}
			for _, r := range c.Rules {
				lc.Add(nft.Opaque{Text: r.Identity(f)})
			}
		}
		for name, s := range t.Sets {
			ls := &nft.Set{Name: s.Name, Key: s.Key, Data: s.Data, Verdict: s.Verdict, Proto: s.Proto, Comment: s.Comment, Dynamic: s.Dynamic, Timeout: s.Timeout}
			if !s.Dynamic {
				for _, e := range s.SortedElements() {
					ls.Put(e)
				}
			}
			lt.Sets[name] = ls
		}
	}
	return out
}

// SetServicePortsPerEndpointMap changes how many service ports share an
// endpoint map until restore is called (benchmarks of the layout only).
func SetServicePortsPerEndpointMap(n uint32) (restore func()) {
	old := endpointMapShard
	endpointMapShard = n
	return func() { endpointMapShard = old }
}
