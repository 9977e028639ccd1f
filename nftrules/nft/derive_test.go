package nft_test

import (
	"runtime"
	"testing"
	"weak"

	"github.com/nftproxy/nftproxy/nftrules/nft"
)

// TestDerivedRulesetsDoNotKeepTheirAncestors: a ruleset derived twice
// over keeps its parent (Diff against it looks only at the changes) but
// not its grandparent, so a long-running Builder holds two rulesets, not
// every one it ever built.
func TestDerivedRulesetsDoNotKeepTheirAncestors(t *testing.T) {
	first := nft.NewRuleset()
	first.Table(nft.IPv4).Chain("c")
	gone := weak.Make(first)
	second := first.Derive().Ruleset()
	first = nil
	third := second.Derive().Ruleset()
	runtime.GC()
	if gone.Value() != nil {
		t.Fatal("the first ruleset is still reachable from the third")
	}
	if nft.Diff(second, third).Objects() != 0 {
		t.Fatal("unchanged derivation: Diff not empty")
	}
	runtime.KeepAlive(third)
}
