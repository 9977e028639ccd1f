package trace_test

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/nftproxy/nftproxy/nftrules/nft"
	"github.com/nftproxy/nftproxy/nftrules/trace"
)

// These tests pin the tracer's semantics on small hand-made rulesets; the
// flow tests in nftrules use it on Build's output.

var (
	podA    = netip.MustParseAddr("10.1.0.2")
	podB    = netip.MustParseAddr("10.1.0.3")
	service = netip.MustParseAddr("172.30.0.10")
)

func tcpTo(dst netip.Addr, port uint16) trace.Packet {
	return trace.Packet{Src: podA, Dst: dst, Proto: nft.TCP, DstPort: port, Path: trace.Forwarded}
}

// table returns an IPv4 ruleset and its table.
func table() (*nft.Ruleset, *nft.Table) {
	rs := nft.NewRuleset()
	return rs, rs.Table(nft.IPv4)
}

func base(t *nft.Table, name string, typ nft.ChainType, hook nft.Hook, prio int) *nft.Chain {
	c := t.Chain(name)
	c.Base = &nft.BaseChain{Type: typ, Hook: hook, Priority: prio}
	return c
}

// endpointMap adds an endpoint map "eps" holding targets at keys off, off+1...
func endpointMap(t *nft.Table, off uint32, targets ...netip.AddrPort) {
	m := &nft.Set{Name: "eps", Key: []nft.Datatype{nft.TypeIndex},
		Data: []nft.Datatype{nft.TypeIPv4Addr, nft.TypeInetService}}
	for i, ap := range targets {
		m.Put(nft.Element{
			Key:  []nft.Value{nft.NumValue(off + uint32(i))},
			Data: []nft.Value{nft.AddrValue(ap.Addr()), nft.NumValue(uint32(ap.Port()))},
		})
	}
	t.Sets.Put(m.Name, m)
}

var dropMatchingMark = nft.SetMarkBits{Bits: 1}

func mustTrace(t *testing.T, rs *nft.Ruleset, p trace.Packet) trace.Result {
	t.Helper()
	r, err := trace.Trace(rs, p)
	if err != nil {
		t.Fatalf("Trace: %v", err)
	}
	return r
}

func TestEmptyRulesetAcceptsUntouched(t *testing.T) {
	for _, rs := range []*nft.Ruleset{nil, nft.NewRuleset()} {
		r := mustTrace(t, rs, tcpTo(service, 80))
		if r.Outcome != trace.Accept || len(r.Targets) != 0 || r.Masquerade {
			t.Errorf("got %v, want accept", r)
		}
	}
}

func TestVerdicts(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *nft.Table)
		want  trace.Outcome
	}{{
		name: "chain end returns to the rule after the jump",
		setup: func(t *nft.Table) {
			base(t, "fwd", nft.FilterChain, nft.Forward, 0).Add(nft.JumpTo("a"))
			t.Chain("fwd").Add(nft.DropStmt)
			t.Chain("a").Add(nft.Counter{})
		},
		want: trace.Drop,
	}, {
		name: "goto does not return to the caller",
		setup: func(t *nft.Table) {
			base(t, "fwd", nft.FilterChain, nft.Forward, 0).Add(nft.GotoChain("a"))
			t.Chain("fwd").Add(nft.DropStmt)
			t.Chain("a").Add(nft.Counter{})
		},
		want: trace.Accept,
	}, {
		name: "goto then return goes back to the chain that jumped",
		setup: func(t *nft.Table) {
			base(t, "fwd", nft.FilterChain, nft.Forward, 0).Add(nft.JumpTo("a"))
			t.Chain("fwd").Add(nft.Reject{})
			t.Chain("a").Add(nft.GotoChain("b"))
			t.Chain("a").Add(nft.DropStmt)
			t.Chain("b").Add(nft.ReturnStmt)
		},
		want: trace.Reject,
	}, {
		name: "return in a base chain applies the policy",
		setup: func(t *nft.Table) {
			base(t, "fwd", nft.FilterChain, nft.Forward, 0).Add(nft.ReturnStmt)
			t.Chain("fwd").Add(nft.DropStmt)
		},
		want: trace.Accept,
	}, {
		name: "accept ends the base chain but not the hook",
		setup: func(t *nft.Table) {
			base(t, "early", nft.FilterChain, nft.Forward, -10).Add(nft.JumpTo("a"))
			t.Chain("early").Add(nft.DropStmt)
			t.Chain("a").Add(nft.VerdictStmt{Verdict: nft.Verdict{Kind: nft.Accept}})
			base(t, "late", nft.FilterChain, nft.Forward, 10).Add(nft.Reject{})
		},
		want: trace.Reject,
	}, {
		name: "base chains of a hook run in priority order",
		setup: func(t *nft.Table) {
			// "a-late" sorts first by name: only priority puts it last.
			base(t, "a-late", nft.FilterChain, nft.Forward, 10).Add(dropMatchingMark)
			base(t, "z-early", nft.FilterChain, nft.Forward, -10).Add(nft.MatchMarkUnset{Bits: 1}, nft.Reject{})
		},
		want: trace.Reject,
	}, {
		name: "hooks run in path order whatever the priorities",
		setup: func(t *nft.Table) {
			base(t, "post", nft.FilterChain, nft.Postrouting, -500).Add(nft.MatchMarkUnset{Bits: 1}, nft.DropStmt)
			base(t, "fwd", nft.FilterChain, nft.Forward, 500).Add(dropMatchingMark)
		},
		want: trace.Accept,
	}, {
		name: "chains of hooks off the path are not run",
		setup: func(t *nft.Table) {
			base(t, "out", nft.FilterChain, nft.Output, 0).Add(nft.DropStmt)
			base(t, "in", nft.FilterChain, nft.Input, 0).Add(nft.DropStmt)
		},
		want: trace.Accept,
	}, {
		name: "a rule whose match fails is skipped",
		setup: func(t *nft.Table) {
			base(t, "fwd", nft.FilterChain, nft.Forward, 0).Add(nft.MatchL4Proto{Proto: nft.UDP}, nft.DropStmt)
			t.Chain("fwd").Add(nft.MatchL4Proto{Proto: nft.TCP}, nft.Reject{})
		},
		want: trace.Reject,
	}, {
		name: "ct status dnat is false without DNAT",
		setup: func(t *nft.Table) {
			base(t, "post", nft.NATChain, nft.Postrouting, 100).Add(nft.MatchCtStatusDNAT{}, nft.DropStmt)
		},
		want: trace.Accept,
	}, {
		name: "ct state new holds for the traced packet",
		setup: func(t *nft.Table) {
			base(t, "fwd", nft.FilterChain, nft.Forward, 0).Add(nft.MatchCtStateNew{}, nft.DropStmt)
		},
		want: trace.Drop,
	}, {
		name: "reject with tcp reset",
		setup: func(t *nft.Table) {
			base(t, "fwd", nft.FilterChain, nft.Forward, 0).Add(nft.MatchL4Proto{Proto: nft.TCP}, nft.RejectTCPReset{})
		},
		want: trace.Reject,
	}, {
		name: "set and clear mark bits",
		setup: func(t *nft.Table) {
			c := base(t, "fwd", nft.FilterChain, nft.Forward, 0)
			c.Add(nft.SetMarkBits{Bits: 0x4001})
			c.Add(nft.ClearMarkBits{Bits: 0x4000})
			c.Add(nft.MatchMarkUnset{Bits: 0x4000}, nft.Reject{})
		},
		want: trace.Reject,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			rs, tbl := table()
			tc.setup(tbl)
			if r := mustTrace(t, rs, tcpTo(service, 80)); r.Outcome != tc.want {
				t.Errorf("got %v, want %v\n%s", r, tc.want, r.Explain())
			}
		})
	}
}

func TestPrefixMatch(t *testing.T) {
	rs, tbl := table()
	c := base(tbl, "fwd", nft.FilterChain, nft.Forward, 0)
	c.Add(nft.MatchPrefix{Field: nft.FieldSaddr, Negate: true, Prefix: netip.MustParsePrefix("10.1.0.0/16")}, nft.DropStmt)
	c.Add(nft.MatchPrefix{Field: nft.FieldDaddr, Prefix: netip.MustParsePrefix("172.30.0.10/32")}, nft.Reject{})

	if r := mustTrace(t, rs, tcpTo(service, 80)); r.Outcome != trace.Reject {
		t.Errorf("pod to service: got %v, want reject", r)
	}
	outside := tcpTo(service, 80)
	outside.Src = netip.MustParseAddr("192.168.1.1")
	if r := mustTrace(t, rs, outside); r.Outcome != trace.Drop {
		t.Errorf("outside to service: got %v, want drop", r)
	}
}

func TestSetAndVmapLookups(t *testing.T) {
	rs, tbl := table()
	key := []nft.Datatype{nft.TypeIPv4Addr, nft.TypeInetProto, nft.TypeInetService}
	vmap := &nft.Set{Name: "dispatch", Key: key, Verdict: true}
	vmap.Put(nft.Element{
		Key:     []nft.Value{nft.AddrValue(service), nft.NumValue(uint32(nft.TCP)), nft.NumValue(80)},
		Verdict: &nft.Verdict{Kind: nft.Goto, Chain: "rej"},
	})
	tbl.Sets.Put(vmap.Name, vmap)
	pairs := &nft.Set{Name: "pairs", Key: []nft.Datatype{nft.TypeIPv4Addr, nft.TypeIPv4Addr}}
	pairs.Put(nft.Element{Key: []nft.Value{nft.AddrValue(podA), nft.AddrValue(podB)}})
	tbl.Sets.Put(pairs.Name, pairs)
	fields := []nft.Field{nft.FieldDaddr, nft.FieldL4Proto, nft.FieldDport}
	c := base(tbl, "fwd", nft.FilterChain, nft.Forward, 0)
	c.Add(nft.VmapLookup{Fields: fields, Map: "dispatch"})
	c.Add(nft.SetLookup{Fields: []nft.Field{nft.FieldSaddr, nft.FieldDaddr}, Set: "pairs"}, nft.DropStmt)
	tbl.Chain("rej").Add(nft.Reject{})

	for _, tc := range []struct {
		name string
		p    trace.Packet
		want trace.Outcome
	}{
		{"vmap hit follows the verdict", tcpTo(service, 80), trace.Reject},
		{"vmap miss goes on to the next rule", tcpTo(service, 81), trace.Accept},
		{"set hit matches", tcpTo(podB, 80), trace.Drop},
		{"set miss does not match", tcpTo(podA, 80), trace.Accept},
	} {
		if r := mustTrace(t, rs, tc.p); r.Outcome != tc.want {
			t.Errorf("%s: got %v, want %v\n%s", tc.name, r, tc.want, r.Explain())
		}
	}
}

// natRuleset DNATs tcp to service:80 to the targets through numgen at
// offset 100, and masquerades in postrouting what the hairpin set matches.
func natRuleset(targets ...netip.AddrPort) *nft.Ruleset {
	rs, tbl := table()
	endpointMap(tbl, 100, targets...)
	hairpin := &nft.Set{Name: "hairpin", Key: []nft.Datatype{nft.TypeIPv4Addr, nft.TypeIPv4Addr}}
	for _, ap := range targets {
		hairpin.Put(nft.Element{Key: []nft.Value{nft.AddrValue(ap.Addr()), nft.AddrValue(ap.Addr())}})
	}
	tbl.Sets.Put(hairpin.Name, hairpin)
	pre := base(tbl, "pre", nft.NATChain, nft.Prerouting, -100)
	pre.Add(nft.MatchPrefix{Field: nft.FieldDaddr, Prefix: netip.PrefixFrom(service, 32)}, nft.GotoChain("svc"))
	tbl.Chain("svc").Add(nft.MatchL4Proto{Proto: nft.TCP},
		nft.DNATToEndpoint{Count: uint32(len(targets)), Offset: 100, Map: "eps"})
	post := base(tbl, "post", nft.NATChain, nft.Postrouting, 100)
	post.Add(nft.MatchCtStatusDNAT{}, nft.SetLookup{Fields: []nft.Field{nft.FieldSaddr, nft.FieldDaddr}, Set: "hairpin"}, nft.Masquerade{})
	return rs
}

func TestDNATYieldsEveryEndpoint(t *testing.T) {
	a, b, c := netip.MustParseAddrPort("10.1.0.9:80"), netip.MustParseAddrPort("10.1.0.3:8080"), netip.MustParseAddrPort("10.1.0.7:80")
	r := mustTrace(t, natRuleset(a, b, c), tcpTo(service, 80))
	want := []netip.AddrPort{b, c, a}
	if r.Outcome != trace.DNAT || !slices.Equal(r.Targets, want) || r.Masquerade {
		t.Errorf("got %v, want DNAT to %v without masquerade\n%s", r, want, r.Explain())
	}
	if got := r.String(); got != "DNAT to 10.1.0.3:8080, 10.1.0.7:80, 10.1.0.9:80" {
		t.Errorf("String() = %q", got)
	}
}

func TestHairpinIsDecidedPerTarget(t *testing.T) {
	self, other := netip.AddrPortFrom(podA, 80), netip.AddrPortFrom(podB, 80)
	r := mustTrace(t, natRuleset(self, other), tcpTo(service, 80))
	if r.Outcome != trace.DNAT || !r.Masquerade {
		t.Fatalf("got %v, want DNAT with masquerade", r)
	}
	for _, b := range r.Branches {
		if b.Masquerade != (b.Target == self) {
			t.Errorf("branch %v: masquerade %v, want it only for the target that is the source", b.Target, b.Masquerade)
		}
	}
	if got, want := r.String(), "DNAT to 10.1.0.2:80, 10.1.0.3:80 (masqueraded to 10.1.0.2:80)"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

func TestNATChainsAfterDNATAreSkipped(t *testing.T) {
	rs := natRuleset(netip.AddrPortFrom(podB, 80))
	tbl := rs.Tables[nft.IPv4]
	base(tbl, "pre2", nft.NATChain, nft.Prerouting, 0).Add(nft.DropStmt)
	if r := mustTrace(t, rs, tcpTo(service, 80)); r.Outcome != trace.DNAT {
		t.Errorf("got %v, want DNAT: a nat chain after the binding must not run\n%s", r, r.Explain())
	}
}

func TestLocalOutUsesOutputHook(t *testing.T) {
	rs, tbl := table()
	base(tbl, "pre", nft.FilterChain, nft.Prerouting, 0).Add(nft.DropStmt)
	base(tbl, "out", nft.FilterChain, nft.Output, 0).Add(nft.Reject{})
	p := tcpTo(service, 80)
	p.Path = trace.LocalOut
	if r := mustTrace(t, rs, p); r.Outcome != trace.Reject {
		t.Errorf("got %v, want reject from the output hook", r)
	}
}

func TestBrokenRulesetsAreErrors(t *testing.T) {
	type unknownStmt struct{ nft.Counter }
	for _, tc := range []struct {
		name    string
		setup   func(t *nft.Table)
		wantErr string
	}{{
		name: "unknown statement",
		setup: func(t *nft.Table) {
			base(t, "fwd", nft.FilterChain, nft.Forward, 0).Add(unknownStmt{})
		},
		wantErr: "unsupported statement type trace_test.unknownStmt",
	}, {
		name: "missing chain",
		setup: func(t *nft.Table) {
			base(t, "fwd", nft.FilterChain, nft.Forward, 0).Add(nft.JumpTo("nowhere"))
		},
		wantErr: `jump to missing chain "nowhere"`,
	}, {
		name: "jump to a base chain",
		setup: func(t *nft.Table) {
			base(t, "fwd", nft.FilterChain, nft.Forward, 0).Add(nft.JumpTo("fwd"))
		},
		wantErr: `jump to base chain "fwd"`,
	}, {
		name: "jump loop",
		setup: func(t *nft.Table) {
			base(t, "fwd", nft.FilterChain, nft.Forward, 0).Add(nft.JumpTo("a"))
			t.Chain("a").Add(nft.JumpTo("a"))
		},
		wantErr: "jump stack exceeds",
	}, {
		name: "goto loop",
		setup: func(t *nft.Table) {
			base(t, "fwd", nft.FilterChain, nft.Forward, 0).Add(nft.GotoChain("a"))
			t.Chain("a").Add(nft.GotoChain("a"))
		},
		wantErr: "does not terminate",
	}, {
		name: "missing set",
		setup: func(t *nft.Table) {
			base(t, "fwd", nft.FilterChain, nft.Forward, 0).Add(nft.SetLookup{Fields: []nft.Field{nft.FieldSaddr}, Set: "nope"})
		},
		wantErr: "set @nope does not exist",
	}, {
		name: "lookup key of the wrong type",
		setup: func(t *nft.Table) {
			t.Sets.Put("ports", &nft.Set{Name: "ports", Key: []nft.Datatype{nft.TypeInetService}})
			base(t, "fwd", nft.FilterChain, nft.Forward, 0).Add(nft.SetLookup{Fields: []nft.Field{nft.FieldDaddr}, Set: "ports"})
		},
		wantErr: "field ip daddr has type ipv4_addr, key field 0 of @ports has type inet_service",
	}, {
		name: "prefix of the other family",
		setup: func(t *nft.Table) {
			base(t, "fwd", nft.FilterChain, nft.Forward, 0).Add(nft.MatchPrefix{Field: nft.FieldSaddr, Prefix: netip.MustParsePrefix("fd00::/8")})
		},
		wantErr: "prefix fd00::/8 in a table of family ip",
	}, {
		name: "endpoint map entry missing",
		setup: func(t *nft.Table) {
			endpointMap(t, 100, netip.AddrPortFrom(podB, 80))
			base(t, "pre", nft.NATChain, nft.Prerouting, -100).Add(nft.MatchL4Proto{Proto: nft.TCP},
				nft.DNATToEndpoint{Count: 2, Offset: 100, Map: "eps"})
		},
		wantErr: "endpoint map @eps has no entry 101 (want 100..101)",
	}, {
		name: "dnat without an l4proto match",
		setup: func(t *nft.Table) {
			endpointMap(t, 0, netip.AddrPortFrom(podB, 80))
			base(t, "pre", nft.NATChain, nft.Prerouting, -100).Add(nft.DNATToEndpoint{Count: 1, Map: "eps"})
		},
		wantErr: "without a preceding meta l4proto match",
	}, {
		name: "tcp reset without a tcp match",
		setup: func(t *nft.Table) {
			base(t, "fwd", nft.FilterChain, nft.Forward, 0).Add(nft.RejectTCPReset{})
		},
		wantErr: "reject with tcp reset without a preceding meta l4proto tcp match",
	}, {
		name: "dnat in postrouting",
		setup: func(t *nft.Table) {
			endpointMap(t, 0, netip.AddrPortFrom(podB, 80))
			base(t, "post", nft.NATChain, nft.Postrouting, 100).Add(nft.MatchL4Proto{Proto: nft.TCP}, nft.DNATToEndpoint{Count: 1, Map: "eps"})
		},
		wantErr: "dnat reached from hook postrouting",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			rs, tbl := table()
			tc.setup(tbl)
			_, err := trace.Trace(rs, tcpTo(service, 80))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("got error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestMalformedPackets(t *testing.T) {
	for _, p := range []trace.Packet{
		{Dst: service, Proto: nft.TCP, DstPort: 80},
		{Src: podA, Dst: netip.MustParseAddr("fd00::1"), Proto: nft.TCP, DstPort: 80},
		{Src: podA, Dst: service, Proto: nft.TCP, DstPort: 80, Path: trace.Path(42)},
	} {
		if _, err := trace.Trace(nft.NewRuleset(), p); err == nil {
			t.Errorf("Trace(%v) succeeded, want an error", p)
		}
	}
}

func TestExplainNamesEveryChainAndBranch(t *testing.T) {
	r := mustTrace(t, natRuleset(netip.AddrPortFrom(podA, 80), netip.AddrPortFrom(podB, 80)), tcpTo(service, 80))
	text := r.Explain()
	for _, want := range []string{
		"packet: tcp 10.1.0.2 -> 172.30.0.10:80 (forwarded)",
		"hook prerouting:",
		"[pre] ip daddr 172.30.0.10 goto svc",
		"branch 1/2: DNAT to 10.1.0.2:80 (masqueraded)",
		"dnat to 10.1.0.3:80 (entry 101, 2 of 2)",
		"[post] ct status dnat ip saddr . ip daddr @hairpin masquerade fully-random  => no match: 10.1.0.2 . 10.1.0.3 not in @hairpin",
		"result: DNAT to 10.1.0.2:80, 10.1.0.3:80 (masqueraded to 10.1.0.2:80)",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("explanation lacks %q:\n%s", want, text)
		}
	}
}
