package dump_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/nftproxy/nftproxy/nftrules"
	"github.com/nftproxy/nftproxy/nftrules/dump"
	"github.com/nftproxy/nftproxy/nftrules/nft"
)

// asLive returns rs as ReadLive hands it back: every rule as the text the
// kernel keeps in its user data.
func asLive(rs *nft.Ruleset) *nft.Ruleset {
	out := nft.NewRuleset()
	for _, f := range rs.SortedFamilies() {
		src, dst := rs.Tables[f], out.Table(f)
		dst.Name = src.Name
		for name, s := range src.Sets.All() {
			dst.Sets.Put(name, s)
		}
		for _, c := range src.SortedChains() {
			nc := dst.Chain(c.Name)
			nc.Base = c.Base
			for _, r := range c.Rules {
				nc.Rules = append(nc.Rules, nft.Rule{Stmts: []nft.Stmt{nft.Opaque{Text: r.Render(f)}}})
			}
		}
	}
	return out
}

// TestRenderNFTCannotBeInjected: --dump-format=nft prints what it parsed,
// never stored text: rule texts, chain names and verdicts planted in our
// table by someone else cannot smuggle commands into `nft -f`. Before, a
// rule's stored text was printed verbatim ("flush ruleset" on its own
// line below).
func TestRenderNFTCannotBeInjected(t *testing.T) {
	rs := nftrules.Build(testState())
	want := rs.Render()
	live := asLive(rs)
	if got := dump.RenderNFT(live); got != want {
		t.Fatalf("an honest live ruleset renders differently from Build")
	}

	t4 := live.Tables[nft.IPv4]
	services := t4.Chains.Get(nftrules.ChainServices)
	for _, text := range []string{
		"accept\n}\n}\nflush ruleset\ntable ip evil {\n\tchain c {", // breaks out of the chain
		"jump x;};};flush;ruleset",                                  // one "name" token
		"ip daddr @cluster-ips;flush jump mark-for-masquerade",      // a set "name"
		"<rule not written by nftproxy> (handle 9)\nflush ruleset",  // our own marker, extended
	} {
		services.Rules = append(services.Rules, nft.Rule{Stmts: []nft.Stmt{nft.Opaque{Text: text}}})
	}
	t4.Chain("evil\n}\nflush ruleset")
	evil := nft.Verdict{Kind: nft.Goto, Chain: "x;flush ruleset"}
	ips := t4.Sets.Get(nftrules.SetServiceIPs)
	ips.Put(nft.Element{Key: []nft.Value{nft.AddrValue(netip.MustParseAddr("10.96.9.9")), nft.NumValue(6), nft.NumValue(80)}, Verdict: &evil})

	out := dump.RenderNFT(live)
	tables := 0
	for _, line := range strings.Split(out, "\n") {
		l := strings.TrimSpace(line)
		if strings.HasPrefix(l, "#") {
			continue
		}
		if strings.Contains(l, "flush") || strings.Contains(l, "evil") {
			t.Errorf("planted text outside a comment: %q", line)
		}
		if strings.HasPrefix(l, "table ") {
			tables++
		}
	}
	if tables != 2 {
		t.Errorf("%d tables, want 2:\n%s", tables, out)
	}
	for _, wantLine := range []string{
		`# "accept\n}\n}\nflush ruleset\ntable ip evil {\n\tchain c {"`,
		`# jump x;};};flush;ruleset`,
		`chain "evil\n}\nflush ruleset" left out`,
		`set service-ips element 10.96.9.9 . 6 . 80 left out`,
	} {
		if !strings.Contains(out, wantLine) {
			t.Errorf("output lacks %q", wantLine)
		}
	}
}
