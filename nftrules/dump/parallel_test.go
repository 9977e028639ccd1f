package dump_test

import (
	"context"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/nftproxy/nftproxy/nftrules"
	"github.com/nftproxy/nftproxy/nftrules/dump"
	"github.com/nftproxy/nftproxy/nftrules/internal/fixture"
	"github.com/nftproxy/nftproxy/nftrules/nft"
	"github.com/nftproxy/nftproxy/nftrules/nft/nftfake"
)

// TestViewInPartsEqualsInLine: the view made on several goroutines (rules
// parsed and chains followed in parts, each part with its own memo) is
// the view made in line, problems included, and so is its text (rendered
// in parts), for a rich ruleset, a broken live one and one of 1,500
// Services with an orphan map entry.
func TestViewInPartsEqualsInLine(t *testing.T) {
	scale := nftrules.Build(fixture.ScaleState(1500, 3, []netip.Prefix{netip.MustParsePrefix("10.128.0.0/9")}))
	orphan := nft.Element{Key: []nft.Value{nft.NumValue(7<<nftrules.IndexBits + 100)}, Data: []nft.Value{nft.AddrValue(netip.MustParseAddr("10.250.0.1")), nft.NumValue(80)}}
	scale.Tables[nft.IPv4].Sets.Get(nftrules.EndpointMapName(nft.TCP, 7)).Put(orphan)

	for _, tc := range []struct {
		name string
		rs   *nft.Ruleset
		want []string // problems the view must report
	}{
		{"rich", nftrules.Build(richState()), nil},
		{"broken live", brokenLive(t), []string{"rule 2 is not nftproxy's", "@endpoints-tcp-0 has no entry 16385 (want 16384..16385)", "@endpoints-tcp-0 holds 1 entries no service chain uses"}},
		{"1,500 Services", scale, []string{"@endpoints-tcp-0 holds 1 entries no service chain uses"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inLine := dump.FromRuleset(tc.rs, nil)
			var lineText strings.Builder
			if err := inLine.WriteText(&lineText); err != nil {
				t.Fatal(err)
			}
			for _, parts := range []int{2, 3} {
				restore := dump.ViewInParts(parts)
				inParts := dump.FromRuleset(tc.rs, nil)
				var partsText strings.Builder
				err := inParts.WriteText(&partsText)
				restore()
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(inParts, inLine) {
					t.Fatalf("in %d parts the view differs; in line:\n%s\nin parts:\n%s", parts, lineText.String(), partsText.String())
				}
				if partsText.String() != lineText.String() {
					t.Fatalf("in %d parts the text differs; in line:\n%s\nin parts:\n%s", parts, lineText.String(), partsText.String())
				}
				all := strings.Join(problemsOf(inParts), "\n")
				for _, want := range tc.want {
					if !strings.Contains(all, want) {
						t.Errorf("in %d parts: problems lack %q:\n%s", parts, want, all)
					}
				}
			}
		})
	}
}

// brokenLive is testState's ruleset read back from a fake kernel after
// another process added a rule to a service chain, deleted an endpoint
// entry, and added an entry no chain uses.
func brokenLive(t *testing.T) *nft.Ruleset {
	kernel := nftfake.New()
	if _, err := kernel.Sync(context.Background(), nftrules.Build(testState()), false); err != nil {
		t.Fatal(err)
	}
	web := nftrules.ServiceChainName(testState().Services[0].Name)
	foreignRule := nft.Rule{Stmts: []nft.Stmt{nft.Opaque{Text: "<rule not written by nftproxy> (handle 4)"}}}
	gone := nft.Element{Key: []nft.Value{nft.NumValue(16385)}}
	extra := nft.Element{Key: []nft.Value{nft.NumValue(3 << 20)}, Data: []nft.Value{nft.AddrValue(netip.MustParseAddr("10.244.9.9")), nft.NumValue(80)}}
	endpoints := &nft.Set{Name: nftrules.EndpointMapName(nft.TCP, 1)}
	if err := kernel.Foreign(nft.ForeignChange{}, &nft.Transaction{Ops: []nft.Op{
		{Kind: nft.OpAddRule, Family: nft.IPv4, Chain: &nft.Chain{Name: web}, Rule: &foreignRule},
		{Kind: nft.OpDelElements, Family: nft.IPv4, Set: endpoints, Elements: []nft.Element{gone}},
		{Kind: nft.OpAddElements, Family: nft.IPv4, Set: endpoints, Elements: []nft.Element{extra}},
	}}); err != nil {
		t.Fatal(err)
	}
	rs, err := kernel.ReadLive()
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// problemsOf returns every problem of a view, its tables' and its Service
// ports'.
func problemsOf(d *dump.Dump) []string {
	var out []string
	for _, tb := range d.Tables {
		out = append(out, tb.Problems...)
	}
	for _, sp := range d.Services {
		out = append(out, sp.Problems...)
	}
	return out
}
