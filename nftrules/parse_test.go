package nftrules_test

import (
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/nftproxy/nftproxy/nftrules"
	"github.com/nftproxy/nftproxy/nftrules/nft"
	"github.com/nftproxy/nftproxy/nftrules/trace"
	"github.com/nftproxy/nftproxy/proxier/model"
)

// richState has every shape Build knows: dual-stack and single-family
// Services, TCP/UDP/SCTP, several ports, endpoints in one family only,
// Services without endpoints, a name long enough to be cut, and IDs
// spread over several endpoint-map shards.
func richState(masqueradeAll bool) *model.State {
	st := goldenState()
	st.MasqueradeAll = masqueradeAll
	st.Services = append(st.Services,
		servicePort(5, "kube-system/sig:diameter", "sctp", 3868, "172.30.0.40,fd00:30::40", readyEP("10.1.0.40:3868"), readyEP("[fd00:1::40]:3868")),
		servicePort(70, "other/v4only:x", "tcp", 8080, "172.30.1.70,fd00:30::1:70", readyEP("10.1.0.70:80"), servingTerminatingEP("10.1.0.71:80")),
		servicePort(200, "other/"+strings.Repeat("long-name-", 12)+":p", "udp", 9999, "172.30.2.200", readyEP("10.1.0.200:9")),
		servicePort(16000, "shard/far", "tcp", 1, "fd00:30::3e80", readyEP("[fd00:1::3e80]:1")),
		sticky(servicePort(71, "other/sticky:s", "tcp", 443, "172.30.1.71,fd00:30::1:71", readyEP("10.1.0.72:443"), readyEP("[fd00:1::72]:443"))),
	)
	return st
}

func sticky(sp *model.ServicePort) *model.ServicePort {
	sp.SessionAffinityClientIP, sp.AffinityTimeoutSeconds = true, 30
	return sp
}

// TestParseRuleRoundTripsBuild parses the rendering of every rule Build
// produces and compares the statements with the built ones.
func TestParseRuleRoundTripsBuild(t *testing.T) {
	for _, st := range []*model.State{richState(false), richState(true), {NodeName: "n"}} {
		if checkRulesRoundTrip(t, nftrules.Build(st)) == 0 {
			t.Fatal("no rules built")
		}
	}
}

// TestParseRuleEveryStatementKind round-trips every statement kind of
// stmt.go (except Opaque, which is unparsed text by definition), including
// those Build does not use today, in both families.
func TestParseRuleEveryStatementKind(t *testing.T) {
	kinds := func(f nft.Family) [][]nft.Stmt {
		p16 := netip.MustParsePrefix("10.244.0.0/16")
		host := netip.MustParsePrefix("10.0.0.1/32")
		if f == nft.IPv6 {
			p16, host = netip.MustParsePrefix("fd44::/64"), netip.MustParsePrefix("fd00::1/128")
		}
		return [][]nft.Stmt{
			{nft.MatchL4Proto{Proto: nft.TCP}, nft.Counter{}, nft.VerdictStmt{Verdict: nft.Verdict{Kind: nft.Accept}}},
			{nft.MatchL4Proto{Proto: nft.SCTP}, nft.DropStmt},
			{nft.MatchPrefix{Field: nft.FieldSaddr, Negate: true, Prefix: p16}, nft.JumpTo("mark-for-masquerade")},
			{nft.MatchPrefix{Field: nft.FieldDaddr, Prefix: host}, nft.ReturnStmt},
			{nft.MatchCtStateNew{}, nft.JumpTo("service-endpoints-check")},
			{nft.MatchFibSaddrLocal{}, nft.JumpTo("mark-for-masquerade")},
			{nft.MatchCtStatusDNAT{}, nft.SetLookup{Fields: []nft.Field{nft.FieldSaddr, nft.FieldDaddr}, Set: "hairpin"}, nft.GotoChain("x")},
			{nft.MatchMarkUnset{Bits: 0x4000}, nft.ReturnStmt},
			{nft.SetMarkBits{Bits: 0x4000}},
			{nft.ClearMarkBits{Bits: 0x80000000}},
			{nft.SetLookup{Fields: []nft.Field{nft.FieldDaddr}, Set: "cluster-ips"}},
			{nft.SetLookup{Fields: []nft.Field{nft.FieldL4Proto, nft.FieldDport}, Set: "s"}},
			{nft.VmapLookup{Fields: []nft.Field{nft.FieldDaddr, nft.FieldL4Proto, nft.FieldDport}, Map: "service-ips"}},
			{nft.MatchL4Proto{Proto: nft.UDP}, nft.DNATToEndpoint{Count: 3, Offset: 16384, Map: "endpoints-udp-0"}},
			{nft.MatchL4Proto{Proto: nft.TCP}, nft.DNATToEndpoint{Count: 1, Map: "endpoints-tcp-0"}},
			{nft.Masquerade{}},
			{nft.MatchL4Proto{Proto: nft.TCP}, nft.RejectTCPReset{}},
			{nft.Reject{}},
			{nft.GotoChain("svc-74r5ozto-default/web/tcp/http")},
			{nft.UpdateSourceSet{Set: "aff-abc-x"}},
			{nft.MatchL4Proto{Proto: nft.TCP}, nft.DNATTo{To: netip.AddrPortFrom(host.Addr(), 8080)}},
			{nft.NumgenVmap{Count: 3, Offset: 16384, Map: "endpoint-chains-0"}},
			{nft.NumgenVmap{Count: 1, Map: "endpoint-chains-0"}},
		}
	}
	for _, f := range nft.Families {
		for _, stmts := range kinds(f) {
			r := nft.Rule{Stmts: stmts}
			text := r.Render(f)
			got, err := nft.ParseRule(f, text)
			if err != nil {
				t.Errorf("%s: %v", f, err)
				continue
			}
			if !reflect.DeepEqual(got, r) {
				t.Errorf("%s: ParseRule(%q) = %#v, want %#v", f, text, got, r)
			}
		}
	}
}

func TestParseRuleRejectsForeignText(t *testing.T) {
	for _, tc := range []struct {
		f    nft.Family
		text string
	}{
		{nft.IPv4, ""},
		{nft.IPv4, "<rule not written by nftproxy> (handle 7)"},
		{nft.IPv4, "ip6 saddr fd00::1 accept"},               // other family's field
		{nft.IPv6, "ip6 saddr 10.0.0.1 accept"},              // address of the other family
		{nft.IPv4, "dnat ip6 to numgen random mod 2 map @m"}, // other family's dnat
		{nft.IPv4, "dnat ip to numgen random mod 2 offset 0 map @m"},
		{nft.IPv4, "meta mark & 0x4000 == 0x00000000"}, // not our spelling
		{nft.IPv4, "tcp dport 80 accept"},
		{nft.IPv4, "ip saddr . ip daddr"},
		{nft.IPv4, "jump"},
		{nft.IPv4, "meta l4proto bogus"},
		{nft.IPv4, "jump x;};flush;ruleset"},                     // a chain "name" that is nft syntax
		{nft.IPv4, "ip daddr @s;flush jump mark-for-masquerade"}, // a set "name" that is nft syntax
		{nft.IPv4, "goto 9lives"},                                // not an identifier
	} {
		if r, err := nft.ParseRule(tc.f, tc.text); err == nil {
			t.Errorf("ParseRule(%s, %q) = %#v, want an error", tc.f, tc.text, r)
		}
	}
}

// TestParseRulesetTracesLikeBuild: a ruleset whose rules are all Opaque
// text (as ReadLive returns them) parses into one the tracer follows
// exactly as the built one.
func TestParseRulesetTracesLikeBuild(t *testing.T) {
	built := nftrules.Build(richState(false))
	opaque := nft.NewRuleset()
	for _, f := range built.SortedFamilies() {
		src, dst := built.Tables[f], opaque.Table(f)
		dst.Sets = src.Sets
		for _, c := range src.SortedChains() {
			nc := dst.Chain(c.Name)
			nc.Base = c.Base
			for _, r := range c.Rules {
				nc.Add(nft.Opaque{Text: r.Render(f)})
			}
		}
	}
	parsed, err := nft.ParseRuleset(opaque)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := parsed.Render(), built.Render(); got != want {
		t.Fatalf("parsed ruleset renders differently:\n%s", lineDiff(want, got))
	}
	for _, pkt := range []trace.Packet{
		podSends("10.1.0.2", "tcp", "172.30.0.10:80"),
		outsiderSends("2001:db8::1", "tcp", "[fd00:30::10]:443"),
		nodeSends("udp", "172.30.0.53:53"),
		podSends("10.1.0.2", "tcp", "172.30.0.99:80"),
		podSends("10.1.0.2", "sctp", "172.30.0.40:3868"),
		podSends("fd00:1::9", "tcp", "[fd00:30::3e80]:1"),
	} {
		want, err := trace.Trace(built, pkt)
		if err != nil {
			t.Fatal(err)
		}
		got, err := trace.Trace(parsed, pkt)
		if err != nil {
			t.Fatal(err)
		}
		if got.Explain() != want.Explain() {
			t.Errorf("%v: trace of the parsed ruleset differs:\n%s", pkt, lineDiff(want.Explain(), got.Explain()))
		}
	}

	// A foreign rule is kept as text and reported.
	services := opaque.Tables[nft.IPv4].Chain(nftrules.ChainServices)
	services.Add(nft.Opaque{Text: "<rule not written by nftproxy> (handle 9)"})
	pos := fmt.Sprintf("chain services rule %d", len(services.Rules))
	if _, err := nft.ParseRuleset(opaque); err == nil || !strings.Contains(err.Error(), pos) {
		t.Errorf("foreign rule: err = %v, want it reported with its chain and position", err)
	}
}
