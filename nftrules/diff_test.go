package nftrules_test

import (
	"net/netip"
	"sort"
	"strconv"
	"testing"

	"github.com/nftproxy/nftproxy/nftrules"
	"github.com/nftproxy/nftproxy/nftrules/nft"
	"github.com/nftproxy/nftproxy/proxier/model"
)

// opSummary lists a transaction's verbs as "verb target (n)" lines.
func opSummary(tx *nft.Transaction) []string {
	var out []string
	for _, op := range tx.Ops {
		target := ""
		switch {
		case op.Set != nil:
			target = op.Set.Name
		case op.Chain != nil:
			target = op.Chain.Name
		}
		line := string(op.Family) + " " + op.Kind.String() + " " + target
		if op.Kind == nft.OpAddElements || op.Kind == nft.OpDelElements {
			line += " (" + strconv.Itoa(op.Len()) + ")"
		}
		out = append(out, line)
	}
	sort.Strings(out)
	return out
}

func TestDiffOfOneChangeAmong1000Services(t *testing.T) {
	st := scaleState(1000, 10)
	b := nftrules.NewBuilder()
	before := b.Build(st)
	sp := st.Services[500]
	chain := nftrules.ServiceChainName(sp.Name)
	epMap := nftrules.EndpointMapName(nft.TCP, sp.ID)

	cases := []struct {
		name   string
		change func(*model.ServicePort)
		want   []string
	}{
		{
			name:   "the local endpoint moves: its map entry and hairpin element are replaced",
			change: func(sp *model.ServicePort) { sp.Endpoints[0].Addr = netip.MustParseAddr("10.250.0.1") },
			want: []string{
				"ip add elements " + epMap + " (1)", "ip add elements hairpin (1)",
				"ip delete elements " + epMap + " (1)", "ip delete elements hairpin (1)",
			},
		},
		{
			name:   "a remote endpoint moves: its map entry is replaced (no hairpin element)",
			change: func(sp *model.ServicePort) { sp.Endpoints[3].Addr = netip.MustParseAddr("10.250.0.1") },
			want: []string{
				"ip add elements " + epMap + " (1)", "ip delete elements " + epMap + " (1)",
			},
		},
		{
			name: "one local endpoint added: the chain's modulus changes and one entry is added",
			change: func(sp *model.ServicePort) {
				sp.Endpoints = append(sp.Endpoints, model.Endpoint{Addr: netip.MustParseAddr("10.250.0.2"), Port: 8080, Ready: true, NodeName: "node"})
			},
			want: []string{
				"ip add elements " + epMap + " (1)", "ip add elements hairpin (1)",
				"ip add rule " + chain, "ip flush chain " + chain,
			},
		},
		{
			name:   "every endpoint becomes unready: the Service rejects",
			change: func(sp *model.ServicePort) { sp.Endpoints = nil },
			want: []string{
				"ip add elements no-endpoint-services (1)", "ip delete chain " + chain,
				"ip delete elements cluster-ips (1)", "ip delete elements " + epMap + " (10)",
				"ip delete elements hairpin (1)", "ip delete elements service-ips (1)",
				"ip flush chain " + chain,
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			changed := *sp
			changed.Endpoints = append([]model.Endpoint(nil), sp.Endpoints...)
			tc.change(&changed)
			next := *st
			next.Services = append([]*model.ServicePort(nil), st.Services...)
			next.Services[500] = &changed
			tx := nft.Diff(before, nftrules.NewBuilder().Build(&next))
			incremental := nft.Diff(before, b.Build(&next))
			b.Build(st) // back to the starting point for the next case
			for _, got := range [][]string{opSummary(tx), opSummary(incremental)} {
				if len(got) != len(tc.want) {
					t.Fatalf("transaction:\n%v\nwant:\n%v", got, tc.want)
				}
				for i := range got {
					if got[i] != tc.want[i] {
						t.Fatalf("transaction:\n%v\nwant:\n%v", got, tc.want)
					}
				}
			}
		})
	}
}
