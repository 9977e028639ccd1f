package trace_test

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/nftproxy/nftproxy/nftrules"
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
	return trace.Packet{Src: podA, Dst: dst, Proto: nftrules.TCP, DstPort: port, Path: trace.Forwarded}
}

// table returns an IPv4 ruleset and its table.
func table() (*nftrules.Ruleset, *nftrules.Table) {
	rs := nftrules.NewRuleset()
	return rs, rs.Table(nftrules.IPv4)
}

func base(t *nftrules.Table, name string, typ nftrules.ChainType, hook nftrules.Hook, prio int) *nftrules.Chain {
	c := t.Chain(name)
	c.Base = &nftrules.BaseChain{Type: typ, Hook: hook, Priority: prio}
	return c
}

// endpointMap adds an endpoint map "eps" holding targets at keys off, off+1...
func endpointMap(t *nftrules.Table, off uint32, targets ...netip.AddrPort) {
	m := &nftrules.Set{Name: "eps", Key: []nftrules.Datatype{nftrules.TypeIndex},
		Data: []nftrules.Datatype{nftrules.TypeIPv4Addr, nftrules.TypeInetService}}
	for i, ap := range targets {
		m.Put(nftrules.Element{
			Key:  []nftrules.Value{nftrules.NumValue(off + uint32(i))},
			Data: []nftrules.Value{nftrules.AddrValue(ap.Addr()), nftrules.NumValue(uint32(ap.Port()))},
		})
	}
	t.Sets[m.Name] = m
}

var dropMatchingMark = nftrules.SetMarkBits{Bits: 1}

func mustTrace(t *testing.T, rs *nftrules.Ruleset, p trace.Packet) trace.Result {
	t.Helper()
	r, err := trace.Trace(rs, p)
	if err != nil {
		t.Fatalf("Trace: %v", err)
	}
	return r
}

func TestEmptyRulesetAcceptsUntouched(t *testing.T) {
	for _, rs := range []*nftrules.Ruleset{nil, nftrules.NewRuleset()} {
		r := mustTrace(t, rs, tcpTo(service, 80))
		if r.Outcome != trace.Accept || len(r.Targets) != 0 || r.Masquerade {
			t.Errorf("got %v, want accept", r)
		}
	}
}

func TestVerdicts(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *nftrules.Table)
		want  trace.Outcome
	}{{
		name: "chain end returns to the rule after the jump",
		setup: func(t *nftrules.Table) {
			base(t, "fwd", nftrules.FilterChain, nftrules.Forward, 0).Add(nftrules.JumpTo("a"))
			t.Chain("fwd").Add(nftrules.DropStmt)
			t.Chain("a").Add(nftrules.Counter{})
		},
		want: trace.Drop,
	}, {
		name: "goto does not return to the caller",
		setup: func(t *nftrules.Table) {
			base(t, "fwd", nftrules.FilterChain, nftrules.Forward, 0).Add(nftrules.GotoChain("a"))
			t.Chain("fwd").Add(nftrules.DropStmt)
			t.Chain("a").Add(nftrules.Counter{})
		},
		want: trace.Accept,
	}, {
		name: "goto then return goes back to the chain that jumped",
		setup: func(t *nftrules.Table) {
			base(t, "fwd", nftrules.FilterChain, nftrules.Forward, 0).Add(nftrules.JumpTo("a"))
			t.Chain("fwd").Add(nftrules.Reject{})
			t.Chain("a").Add(nftrules.GotoChain("b"))
			t.Chain("a").Add(nftrules.DropStmt)
			t.Chain("b").Add(nftrules.ReturnStmt)
		},
		want: trace.Reject,
	}, {
		name: "return in a base chain applies the policy",
		setup: func(t *nftrules.Table) {
			base(t, "fwd", nftrules.FilterChain, nftrules.Forward, 0).Add(nftrules.ReturnStmt)
			t.Chain("fwd").Add(nftrules.DropStmt)
		},
		want: trace.Accept,
	}, {
		name: "accept ends the base chain but not the hook",
		setup: func(t *nftrules.Table) {
			base(t, "early", nftrules.FilterChain, nftrules.Forward, -10).Add(nftrules.JumpTo("a"))
			t.Chain("early").Add(nftrules.DropStmt)
			t.Chain("a").Add(nftrules.VerdictStmt{Verdict: nftrules.Verdict{Kind: nftrules.Accept}})
			base(t, "late", nftrules.FilterChain, nftrules.Forward, 10).Add(nftrules.Reject{})
		},
		want: trace.Reject,
	}, {
		name: "base chains of a hook run in priority order",
		setup: func(t *nftrules.Table) {
			// "a-late" sorts first by name: only priority puts it last.
			base(t, "a-late", nftrules.FilterChain, nftrules.Forward, 10).Add(dropMatchingMark)
			base(t, "z-early", nftrules.FilterChain, nftrules.Forward, -10).Add(nftrules.MatchMarkUnset{Bits: 1}, nftrules.Reject{})
		},
		want: trace.Reject,
	}, {
		name: "hooks run in path order whatever the priorities",
		setup: func(t *nftrules.Table) {
			base(t, "post", nftrules.FilterChain, nftrules.Postrouting, -500).Add(nftrules.MatchMarkUnset{Bits: 1}, nftrules.DropStmt)
			base(t, "fwd", nftrules.FilterChain, nftrules.Forward, 500).Add(dropMatchingMark)
		},
		want: trace.Accept,
	}, {
		name: "chains of hooks off the path are not run",
		setup: func(t *nftrules.Table) {
			base(t, "out", nftrules.FilterChain, nftrules.Output, 0).Add(nftrules.DropStmt)
			base(t, "in", nftrules.FilterChain, nftrules.Input, 0).Add(nftrules.DropStmt)
		},
		want: trace.Accept,
	}, {
		name: "a rule whose match fails is skipped",
		setup: func(t *nftrules.Table) {
			base(t, "fwd", nftrules.FilterChain, nftrules.Forward, 0).Add(nftrules.MatchL4Proto{Proto: nftrules.UDP}, nftrules.DropStmt)
			t.Chain("fwd").Add(nftrules.MatchL4Proto{Proto: nftrules.TCP}, nftrules.Reject{})
		},
		want: trace.Reject,
	}, {
		name: "ct status dnat is false without DNAT",
		setup: func(t *nftrules.Table) {
			base(t, "post", nftrules.NATChain, nftrules.Postrouting, 100).Add(nftrules.MatchCtStatusDNAT{}, nftrules.DropStmt)
		},
		want: trace.Accept,
	}, {
		name: "ct state new holds for the traced packet",
		setup: func(t *nftrules.Table) {
			base(t, "fwd", nftrules.FilterChain, nftrules.Forward, 0).Add(nftrules.MatchCtStateNew{}, nftrules.DropStmt)
		},
		want: trace.Drop,
	}, {
		name: "reject with tcp reset",
		setup: func(t *nftrules.Table) {
			base(t, "fwd", nftrules.FilterChain, nftrules.Forward, 0).Add(nftrules.MatchL4Proto{Proto: nftrules.TCP}, nftrules.RejectTCPReset{})
		},
		want: trace.Reject,
	}, {
		name: "set and clear mark bits",
		setup: func(t *nftrules.Table) {
			c := base(t, "fwd", nftrules.FilterChain, nftrules.Forward, 0)
			c.Add(nftrules.SetMarkBits{Bits: 0x4001})
			c.Add(nftrules.ClearMarkBits{Bits: 0x4000})
			c.Add(nftrules.MatchMarkUnset{Bits: 0x4000}, nftrules.Reject{})
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
	c := base(tbl, "fwd", nftrules.FilterChain, nftrules.Forward, 0)
	c.Add(nftrules.MatchPrefix{Field: nftrules.FieldSaddr, Negate: true, Prefix: netip.MustParsePrefix("10.1.0.0/16")}, nftrules.DropStmt)
	c.Add(nftrules.MatchPrefix{Field: nftrules.FieldDaddr, Prefix: netip.MustParsePrefix("172.30.0.10/32")}, nftrules.Reject{})

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
	key := []nftrules.Datatype{nftrules.TypeIPv4Addr, nftrules.TypeInetProto, nftrules.TypeInetService}
	vmap := &nftrules.Set{Name: "dispatch", Key: key, Verdict: true}
	vmap.Put(nftrules.Element{
		Key:     []nftrules.Value{nftrules.AddrValue(service), nftrules.NumValue(uint32(nftrules.TCP)), nftrules.NumValue(80)},
		Verdict: &nftrules.Verdict{Kind: nftrules.Goto, Chain: "rej"},
	})
	tbl.Sets[vmap.Name] = vmap
	pairs := &nftrules.Set{Name: "pairs", Key: []nftrules.Datatype{nftrules.TypeIPv4Addr, nftrules.TypeIPv4Addr}}
	pairs.Put(nftrules.Element{Key: []nftrules.Value{nftrules.AddrValue(podA), nftrules.AddrValue(podB)}})
	tbl.Sets[pairs.Name] = pairs
	fields := []nftrules.Field{nftrules.FieldDaddr, nftrules.FieldL4Proto, nftrules.FieldDport}
	c := base(tbl, "fwd", nftrules.FilterChain, nftrules.Forward, 0)
	c.Add(nftrules.VmapLookup{Fields: fields, Map: "dispatch"})
	c.Add(nftrules.SetLookup{Fields: []nftrules.Field{nftrules.FieldSaddr, nftrules.FieldDaddr}, Set: "pairs"}, nftrules.DropStmt)
	tbl.Chain("rej").Add(nftrules.Reject{})

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
func natRuleset(targets ...netip.AddrPort) *nftrules.Ruleset {
	rs, tbl := table()
	endpointMap(tbl, 100, targets...)
	hairpin := &nftrules.Set{Name: "hairpin", Key: []nftrules.Datatype{nftrules.TypeIPv4Addr, nftrules.TypeIPv4Addr}}
	for _, ap := range targets {
		hairpin.Put(nftrules.Element{Key: []nftrules.Value{nftrules.AddrValue(ap.Addr()), nftrules.AddrValue(ap.Addr())}})
	}
	tbl.Sets[hairpin.Name] = hairpin
	pre := base(tbl, "pre", nftrules.NATChain, nftrules.Prerouting, -100)
	pre.Add(nftrules.MatchPrefix{Field: nftrules.FieldDaddr, Prefix: netip.PrefixFrom(service, 32)}, nftrules.GotoChain("svc"))
	tbl.Chain("svc").Add(nftrules.MatchL4Proto{Proto: nftrules.TCP},
		nftrules.DNATToEndpoint{Count: uint32(len(targets)), Offset: 100, Map: "eps"})
	post := base(tbl, "post", nftrules.NATChain, nftrules.Postrouting, 100)
	post.Add(nftrules.MatchCtStatusDNAT{}, nftrules.SetLookup{Fields: []nftrules.Field{nftrules.FieldSaddr, nftrules.FieldDaddr}, Set: "hairpin"}, nftrules.Masquerade{})
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
	tbl := rs.Tables[nftrules.IPv4]
	base(tbl, "pre2", nftrules.NATChain, nftrules.Prerouting, 0).Add(nftrules.DropStmt)
	if r := mustTrace(t, rs, tcpTo(service, 80)); r.Outcome != trace.DNAT {
		t.Errorf("got %v, want DNAT: a nat chain after the binding must not run\n%s", r, r.Explain())
	}
}

func TestLocalOutUsesOutputHook(t *testing.T) {
	rs, tbl := table()
	base(tbl, "pre", nftrules.FilterChain, nftrules.Prerouting, 0).Add(nftrules.DropStmt)
	base(tbl, "out", nftrules.FilterChain, nftrules.Output, 0).Add(nftrules.Reject{})
	p := tcpTo(service, 80)
	p.Path = trace.LocalOut
	if r := mustTrace(t, rs, p); r.Outcome != trace.Reject {
		t.Errorf("got %v, want reject from the output hook", r)
	}
}

func TestBrokenRulesetsAreErrors(t *testing.T) {
	type unknownStmt struct{ nftrules.Counter }
	for _, tc := range []struct {
		name    string
		setup   func(t *nftrules.Table)
		wantErr string
	}{{
		name: "unknown statement",
		setup: func(t *nftrules.Table) {
			base(t, "fwd", nftrules.FilterChain, nftrules.Forward, 0).Add(unknownStmt{})
		},
		wantErr: "unsupported statement type trace_test.unknownStmt",
	}, {
		name: "missing chain",
		setup: func(t *nftrules.Table) {
			base(t, "fwd", nftrules.FilterChain, nftrules.Forward, 0).Add(nftrules.JumpTo("nowhere"))
		},
		wantErr: `jump to missing chain "nowhere"`,
	}, {
		name: "jump to a base chain",
		setup: func(t *nftrules.Table) {
			base(t, "fwd", nftrules.FilterChain, nftrules.Forward, 0).Add(nftrules.JumpTo("fwd"))
		},
		wantErr: `jump to base chain "fwd"`,
	}, {
		name: "jump loop",
		setup: func(t *nftrules.Table) {
			base(t, "fwd", nftrules.FilterChain, nftrules.Forward, 0).Add(nftrules.JumpTo("a"))
			t.Chain("a").Add(nftrules.JumpTo("a"))
		},
		wantErr: "jump stack exceeds",
	}, {
		name: "goto loop",
		setup: func(t *nftrules.Table) {
			base(t, "fwd", nftrules.FilterChain, nftrules.Forward, 0).Add(nftrules.GotoChain("a"))
			t.Chain("a").Add(nftrules.GotoChain("a"))
		},
		wantErr: "does not terminate",
	}, {
		name: "missing set",
		setup: func(t *nftrules.Table) {
			base(t, "fwd", nftrules.FilterChain, nftrules.Forward, 0).Add(nftrules.SetLookup{Fields: []nftrules.Field{nftrules.FieldSaddr}, Set: "nope"})
		},
		wantErr: "set @nope does not exist",
	}, {
		name: "lookup key of the wrong type",
		setup: func(t *nftrules.Table) {
			t.Sets["ports"] = &nftrules.Set{Name: "ports", Key: []nftrules.Datatype{nftrules.TypeInetService}}
			base(t, "fwd", nftrules.FilterChain, nftrules.Forward, 0).Add(nftrules.SetLookup{Fields: []nftrules.Field{nftrules.FieldDaddr}, Set: "ports"})
		},
		wantErr: "field ip daddr has type ipv4_addr, key field 0 of @ports has type inet_service",
	}, {
		name: "prefix of the other family",
		setup: func(t *nftrules.Table) {
			base(t, "fwd", nftrules.FilterChain, nftrules.Forward, 0).Add(nftrules.MatchPrefix{Field: nftrules.FieldSaddr, Prefix: netip.MustParsePrefix("fd00::/8")})
		},
		wantErr: "prefix fd00::/8 in a table of family ip",
	}, {
		name: "endpoint map entry missing",
		setup: func(t *nftrules.Table) {
			endpointMap(t, 100, netip.AddrPortFrom(podB, 80))
			base(t, "pre", nftrules.NATChain, nftrules.Prerouting, -100).Add(nftrules.MatchL4Proto{Proto: nftrules.TCP},
				nftrules.DNATToEndpoint{Count: 2, Offset: 100, Map: "eps"})
		},
		wantErr: "endpoint map @eps has no entry 101 (want 100..101)",
	}, {
		name: "dnat without an l4proto match",
		setup: func(t *nftrules.Table) {
			endpointMap(t, 0, netip.AddrPortFrom(podB, 80))
			base(t, "pre", nftrules.NATChain, nftrules.Prerouting, -100).Add(nftrules.DNATToEndpoint{Count: 1, Map: "eps"})
		},
		wantErr: "without a preceding meta l4proto match",
	}, {
		name: "tcp reset without a tcp match",
		setup: func(t *nftrules.Table) {
			base(t, "fwd", nftrules.FilterChain, nftrules.Forward, 0).Add(nftrules.RejectTCPReset{})
		},
		wantErr: "reject with tcp reset without a preceding meta l4proto tcp match",
	}, {
		name: "dnat in postrouting",
		setup: func(t *nftrules.Table) {
			endpointMap(t, 0, netip.AddrPortFrom(podB, 80))
			base(t, "post", nftrules.NATChain, nftrules.Postrouting, 100).Add(nftrules.MatchL4Proto{Proto: nftrules.TCP}, nftrules.DNATToEndpoint{Count: 1, Map: "eps"})
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
		{Dst: service, Proto: nftrules.TCP, DstPort: 80},
		{Src: podA, Dst: netip.MustParseAddr("fd00::1"), Proto: nftrules.TCP, DstPort: 80},
		{Src: podA, Dst: service, Proto: nftrules.TCP, DstPort: 80, Path: trace.Path(42)},
	} {
		if _, err := trace.Trace(nftrules.NewRuleset(), p); err == nil {
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
