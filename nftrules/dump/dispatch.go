package dump

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/nftproxy/nftproxy/nftrules"
	"github.com/nftproxy/nftproxy/nftrules/nft"
)

// dispatch is one element of a dispatch set and what it is for.
type dispatch struct {
	set      *nft.Set
	e        nft.Element
	key      DispatchKey
	nodePort bool
	reject   bool
	chain    string // where it sends traffic ("" for reject or drop)
	named    namedChain
}

// dispatchSets are the sets whose elements are a Service port's frontends.
var dispatchSets = []struct {
	name     string
	nodePort bool
	reject   bool
}{
	{nftrules.SetServiceIPs, false, false},
	{nftrules.SetNoEndpointServices, false, true},
	{nftrules.SetServiceNodePorts, true, false},
	{nftrules.SetNoEndpointNodePorts, true, true},
}

// dispatchesOf returns the elements of the table's dispatch sets, set by
// set and ordered by key (address, protocol, port; not by rendering, which
// costs a tenth of the view at 10k Services), and a problem for every
// element whose key is not a dispatch key. It marks the chains the
// elements send traffic to as referenced.
func dispatchesOf(t *nft.Table, referenced map[string]bool) ([]dispatch, []string) {
	var ds []dispatch
	var problems []string
	for _, d := range dispatchSets {
		s := t.Sets.Get(d.name)
		if s == nil || !s.Verdict {
			continue
		}
		var bad []string
		var keyed []keyedElement
		s.Each(func(e nft.Element) {
			if e.Verdict != nil && e.Verdict.Chain != "" {
				referenced[e.Verdict.Chain] = true
			}
			k, ok := dispatchKeyOf(e, d.nodePort)
			if !ok {
				bad = append(bad, fmt.Sprintf("@%s element %s: unexpected key", s.Name, e.KeyString()))
				return
			}
			keyed = append(keyed, keyedElement{k, e})
		})
		// Sorted before they become dispatches: a dispatch is ten times
		// the size to move.
		slices.SortFunc(keyed, func(a, b keyedElement) int {
			return cmp.Or(a.key.Addr.Compare(b.key.Addr), cmp.Compare(a.key.Proto, b.key.Proto), cmp.Compare(a.key.Port, b.key.Port))
		})
		ds = slices.Grow(ds, len(keyed))
		for _, ke := range keyed {
			ds = append(ds, dispatch{set: s, e: ke.e, key: ke.key, nodePort: d.nodePort, reject: d.reject, chain: targetChain(ke.e)})
		}
		slices.Sort(bad)
		problems = append(problems, bad...)
	}
	return ds, problems
}

func isDispatchSet(name string) bool {
	for _, d := range dispatchSets {
		if d.name == name {
			return true
		}
	}
	return false
}

// keyedElement is a dispatch element and its key.
type keyedElement struct {
	key DispatchKey
	e   nft.Element
}

// targetChain is the chain a dispatch element sends traffic to: "" for
// reject (the shared reject chain) or a verdict without a chain.
func targetChain(e nft.Element) string {
	if e.Verdict != nil && (e.Verdict.Kind == nft.Goto || e.Verdict.Kind == nft.Jump) && e.Verdict.Chain != nftrules.ChainReject {
		return e.Verdict.Chain
	}
	return ""
}

// dispatchKeyOf reads the key of a dispatch element: address . protocol .
// port, or protocol . port for a node port (ok false for another shape).
func dispatchKeyOf(e nft.Element, nodePort bool) (DispatchKey, bool) {
	if nodePort {
		if len(e.Key) != 2 || e.Key[0].Num > 0xff || e.Key[1].Num > 0xffff {
			return DispatchKey{}, false
		}
		return DispatchKey{Proto: nft.Protocol(e.Key[0].Num), Port: uint16(e.Key[1].Num)}, true
	}
	if len(e.Key) != 3 || !e.Key[0].Addr.IsValid() || e.Key[1].Num > 0xff || e.Key[2].Num > 0xffff {
		return DispatchKey{}, false
	}
	return DispatchKey{Addr: e.Key[0].Addr, Proto: nft.Protocol(e.Key[1].Num), Port: uint16(e.Key[2].Num)}, true
}
