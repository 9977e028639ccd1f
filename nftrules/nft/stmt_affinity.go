package nft

import (
	"fmt"
	"net/netip"
)

// Statements used only by Services with session affinity (ClientIP). Such a
// service port gets upstream's per-endpoint layout: a dynamic set per
// endpoint remembering the clients it served, and a chain per endpoint
// that refreshes the set and DNATs; see README.md.

// UpdateSourceSet adds or refreshes the packet's source address in a
// dynamic set with timeout: "update @affinity-… { ip saddr }".
type UpdateSourceSet struct{ Set string }

func (s UpdateSourceSet) Render(f Family) string {
	return fmt.Sprintf("update @%s { %s saddr }", s.Set, f)
}

// DNATTo destination-NATs to one address and port; the rule must start
// with a MatchL4Proto: "dnat to 10.0.0.1:8080".
type DNATTo struct{ To netip.AddrPort }

func (s DNATTo) Render(Family) string { return "dnat to " + s.To.String() }

// NumgenVmap picks one of Count entries uniformly at random from a verdict
// map keyed by index: "numgen random mod 3 offset 16384 vmap @endpoint-chains-0".
type NumgenVmap struct {
	Count  uint32
	Offset uint32
	Map    string
}

func (s NumgenVmap) Render(Family) string {
	off := ""
	if s.Offset != 0 {
		off = fmt.Sprintf(" offset %d", s.Offset)
	}
	return fmt.Sprintf("numgen random mod %d%s vmap @%s", s.Count, off, s.Map)
}
