package nftfake_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nftproxy/nftproxy/nftrules/nft"
	"github.com/nftproxy/nftproxy/nftrules/nft/nftfake"
)

const ip = nft.IPv4

func rule(t *testing.T, text string) *nft.Rule {
	t.Helper()
	r, err := nft.ParseRule(ip, text)
	if err != nil {
		t.Fatalf("%q: %v", text, err)
	}
	return &r
}

var (
	serviceIPs  = &nft.Set{Name: "service-ips", Key: []nft.Datatype{nft.TypeIPv4Addr, nft.TypeInetProto, nft.TypeInetService}, Verdict: true}
	endpoints   = &nft.Set{Name: "endpoints-tcp-0", Key: []nft.Datatype{nft.TypeIndex}, Data: []nft.Datatype{nft.TypeIPv4Addr, nft.TypeInetService}, Proto: nft.TCP}
	clusterIPs  = &nft.Set{Name: "cluster-ips", Key: []nft.Datatype{nft.TypeIPv4Addr}}
	affinity    = &nft.Set{Name: "aff", Key: []nft.Datatype{nft.TypeIPv4Addr}, Dynamic: true, Timeout: time.Hour}
	prerouting  = &nft.BaseChain{Type: nft.NATChain, Hook: nft.Prerouting, Priority: -100}
	goToSvcA    = &nft.Verdict{Kind: nft.Goto, Chain: "svc-a"}
	webKey      = []nft.Value{addr("10.96.0.1"), nft.NumValue(uint32(nft.TCP)), nft.NumValue(80)}
	webElement  = nft.Element{Key: webKey, Verdict: goToSvcA}
	endpoint0   = nft.Element{Key: []nft.Value{nft.NumValue(0)}, Data: []nft.Value{addr("10.1.0.1"), nft.NumValue(8080)}}
	clusterIP   = nft.Element{Key: []nft.Value{addr("10.96.0.1")}}
	newClusterP = nft.Element{Key: []nft.Value{addr("10.96.0.9")}}
)

func addr(s string) nft.Value { return nft.AddrValue(netip.MustParseAddr(s)) }

// base is a small table of ours: a base chain jumping to a dispatch chain,
// a verdict map sending a ClusterIP to a service chain that DNATs through
// a data map, a plain set and a dynamic set.
func base(t *testing.T) *nft.Ruleset {
	rs := nft.NewRuleset()
	tb := rs.Table(ip)
	for _, s := range []*nft.Set{serviceIPs, endpoints, clusterIPs, affinity} {
		c := *s
		tb.Sets.Put(s.Name, &c)
	}
	tb.Sets.Get(serviceIPs.Name).Put(webElement)
	tb.Sets.Get(endpoints.Name).Put(endpoint0)
	tb.Sets.Get(clusterIPs.Name).Put(clusterIP)
	tb.Chains.Put("nat-prerouting", &nft.Chain{Name: "nat-prerouting", Base: prerouting, Rules: []nft.Rule{*rule(t, "jump services")}})
	tb.Chains.Put("services", &nft.Chain{Name: "services", Rules: []nft.Rule{*rule(t, "ip daddr . meta l4proto . th dport vmap @service-ips")}})
	tb.Chains.Put("svc-a", &nft.Chain{Name: "svc-a", Rules: []nft.Rule{
		*rule(t, "update @aff { ip saddr }"),
		*rule(t, "meta l4proto tcp dnat ip to numgen random mod 1 map @endpoints-tcp-0"),
	}})
	return rs
}

func chainOp(k nft.OpKind, name string) nft.Op {
	return nft.Op{Kind: k, Family: ip, Chain: &nft.Chain{Name: name}}
}

func setOp(k nft.OpKind, s *nft.Set, els ...nft.Element) nft.Op {
	return nft.Op{Kind: k, Family: ip, Set: s, Elements: els}
}

func ruleOp(t *testing.T, chain, text string) nft.Op {
	return nft.Op{Kind: nft.OpAddRule, Family: ip, Chain: &nft.Chain{Name: chain}, Rule: rule(t, text)}
}

// synced returns a Fake holding base.
func synced(t *testing.T) *nftfake.Fake {
	t.Helper()
	f := nftfake.New()
	if _, err := f.Sync(context.Background(), base(t), false); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestFakeAcceptsAndRejectsAsTheKernel applies, to a fake holding base,
// transactions that begin with a valid change (a new cluster-ips element)
// followed by the case's ops. Accepted ones change the state as the kernel
// would; refused ones fail with the kernel's errno and leave the state
// exactly as it was, the valid first change included.
func TestFakeAcceptsAndRejectsAsTheKernel(t *testing.T) {
	drop := &nft.Verdict{Kind: nft.Drop}
	for _, tc := range []struct {
		name  string
		ops   func(t *testing.T) []nft.Op
		errno error // nil: accepted
		check func(t *testing.T, rs *nft.Ruleset)
	}{
		{name: "an element added again with its value is a no-op",
			ops: func(*testing.T) []nft.Op { return []nft.Op{setOp(nft.OpAddElements, serviceIPs, webElement)} },
			check: func(t *testing.T, rs *nft.Ruleset) {
				if n := rs.Tables[ip].Sets.Get(serviceIPs.Name).Len(); n != 1 {
					t.Errorf("service-ips has %d elements, want 1", n)
				}
			}},
		{name: "a changed element is deleted and added back",
			ops: func(*testing.T) []nft.Op {
				return []nft.Op{setOp(nft.OpDelElements, serviceIPs, webElement), setOp(nft.OpAddElements, serviceIPs, nft.Element{Key: webKey, Verdict: drop})}
			},
			check: func(t *testing.T, rs *nft.Ruleset) {
				if e, _ := rs.Tables[ip].Sets.Get(serviceIPs.Name).Lookup(webElement.KeyString()); e.ValueString() != "drop" {
					t.Errorf("element is %q, want drop", e.ValueString())
				}
			}},
		{name: "a set added again with its type keeps its elements",
			ops: func(*testing.T) []nft.Op { return []nft.Op{setOp(nft.OpAddSet, endpoints)} },
			check: func(t *testing.T, rs *nft.Ruleset) {
				if n := rs.Tables[ip].Sets.Get(endpoints.Name).Len(); n != 1 {
					t.Errorf("%s has %d elements, want 1", endpoints.Name, n)
				}
			}},
		{name: "a chain added again keeps its rules",
			ops: func(*testing.T) []nft.Op { return []nft.Op{chainOp(nft.OpAddChain, "svc-a")} },
			check: func(t *testing.T, rs *nft.Ruleset) {
				if n := len(rs.Tables[ip].Chains.Get("svc-a").Rules); n != 2 {
					t.Errorf("svc-a has %d rules, want 2", n)
				}
			}},
		{name: "a chain is deleted once its rules and the elements naming it are",
			ops: func(*testing.T) []nft.Op {
				return []nft.Op{setOp(nft.OpDelElements, serviceIPs, webElement), chainOp(nft.OpFlushChain, "svc-a"), chainOp(nft.OpDelChain, "svc-a")}
			},
			check: func(t *testing.T, rs *nft.Ruleset) {
				if rs.Tables[ip].Chains.Get("svc-a") != nil {
					t.Error("svc-a survived")
				}
			}},
		{name: "sets are deleted once no rule uses them",
			ops: func(*testing.T) []nft.Op {
				return []nft.Op{chainOp(nft.OpFlushChain, "svc-a"), setOp(nft.OpDelSet, endpoints), setOp(nft.OpDelSet, affinity)}
			},
			check: func(t *testing.T, rs *nft.Ruleset) {
				if rs.Tables[ip].Sets.Len() != 2 {
					t.Errorf("sets left: %d, want 2", rs.Tables[ip].Sets.Len())
				}
			}},
		{name: "a table deleted and added again is empty",
			ops: func(*testing.T) []nft.Op {
				return []nft.Op{{Kind: nft.OpDelTable, Family: ip}, {Kind: nft.OpAddTable, Family: ip}}
			},
			check: func(t *testing.T, rs *nft.Ruleset) {
				if tb := rs.Tables[ip]; tb == nil || tb.Chains.Len()+tb.Sets.Len() != 0 {
					t.Errorf("table after delete and add: %+v", tb)
				}
			}},

		{name: "an element that exists with another value",
			ops: func(*testing.T) []nft.Op {
				return []nft.Op{setOp(nft.OpAddElements, serviceIPs, nft.Element{Key: webKey, Verdict: drop})}
			},
			errno: unix.EEXIST},
		{name: "deleting a missing element",
			ops: func(*testing.T) []nft.Op {
				return []nft.Op{setOp(nft.OpDelElements, clusterIPs, nft.Element{Key: []nft.Value{addr("10.96.0.77")}})}
			},
			errno: unix.ENOENT},
		{name: "deleting a chain with rules",
			ops: func(*testing.T) []nft.Op {
				return []nft.Op{setOp(nft.OpDelElements, serviceIPs, webElement), chainOp(nft.OpDelChain, "svc-a")}
			},
			errno: unix.EBUSY},
		{name: "deleting a chain a verdict element names",
			ops: func(*testing.T) []nft.Op {
				return []nft.Op{chainOp(nft.OpFlushChain, "svc-a"), chainOp(nft.OpDelChain, "svc-a")}
			},
			errno: unix.EBUSY},
		{name: "deleting a chain a rule jumps to",
			ops: func(*testing.T) []nft.Op {
				return []nft.Op{chainOp(nft.OpFlushChain, "services"), chainOp(nft.OpDelChain, "services")}
			},
			errno: unix.EBUSY},
		{name: "deleting a set a rule uses",
			ops:   func(*testing.T) []nft.Op { return []nft.Op{setOp(nft.OpDelSet, endpoints)} },
			errno: unix.EBUSY},
		{name: "a rule naming a missing set",
			ops:   func(t *testing.T) []nft.Op { return []nft.Op{ruleOp(t, "services", "ip daddr @nope drop")} },
			errno: unix.ENOENT},
		{name: "a rule jumping to a missing chain",
			ops:   func(t *testing.T) []nft.Op { return []nft.Op{ruleOp(t, "services", "jump nope")} },
			errno: unix.ENOENT},
		{name: "a rule jumping to a base chain",
			ops:   func(t *testing.T) []nft.Op { return []nft.Op{ruleOp(t, "services", "jump nat-prerouting")} },
			errno: unix.EOPNOTSUPP},
		{name: "a vmap through a data map",
			ops: func(t *testing.T) []nft.Op {
				return []nft.Op{ruleOp(t, "services", "ip daddr . th dport vmap @endpoints-tcp-0")}
			},
			errno: unix.EINVAL},
		{name: "a dnat map through a verdict map",
			ops: func(t *testing.T) []nft.Op {
				return []nft.Op{ruleOp(t, "svc-a", "meta l4proto tcp dnat ip to numgen random mod 1 map @service-ips")}
			},
			errno: unix.EINVAL},
		{name: "an update of a set that is not dynamic",
			ops:   func(t *testing.T) []nft.Op { return []nft.Op{ruleOp(t, "svc-a", "update @cluster-ips { ip saddr }")} },
			errno: unix.EOPNOTSUPP},
		{name: "a verdict element naming a missing chain",
			ops: func(*testing.T) []nft.Op {
				return []nft.Op{setOp(nft.OpAddElements, serviceIPs, nft.Element{Key: []nft.Value{addr("10.96.0.2"), nft.NumValue(6), nft.NumValue(80)}, Verdict: &nft.Verdict{Kind: nft.Goto, Chain: "nope"}})}
			},
			errno: unix.ENOENT},
		{name: "a verdict element naming a base chain",
			ops: func(*testing.T) []nft.Op {
				return []nft.Op{setOp(nft.OpAddElements, serviceIPs, nft.Element{Key: []nft.Value{addr("10.96.0.2"), nft.NumValue(6), nft.NumValue(80)}, Verdict: &nft.Verdict{Kind: nft.Jump, Chain: "nat-prerouting"}})}
			},
			errno: unix.EOPNOTSUPP},
		{name: "an element not of the set's type",
			ops:   func(*testing.T) []nft.Op { return []nft.Op{setOp(nft.OpAddElements, clusterIPs, webElement)} },
			errno: unix.EINVAL},
		{name: "a set added again with another type",
			ops: func(*testing.T) []nft.Op {
				return []nft.Op{setOp(nft.OpAddSet, &nft.Set{Name: clusterIPs.Name, Key: []nft.Datatype{nft.TypeIPv4Addr, nft.TypeInetService}})}
			},
			errno: unix.EEXIST},
		{name: "a chain added again with another hook",
			ops: func(*testing.T) []nft.Op {
				return []nft.Op{{Kind: nft.OpAddChain, Family: ip, Chain: &nft.Chain{Name: "nat-prerouting", Base: &nft.BaseChain{Type: nft.NATChain, Hook: nft.Output, Priority: -100}}}}
			},
			errno: unix.EEXIST},
		{name: "a rule in a deleted table",
			ops: func(t *testing.T) []nft.Op {
				return []nft.Op{{Kind: nft.OpDelTable, Family: ip}, ruleOp(t, "services", "drop")}
			},
			errno: unix.ENOENT},
		{name: "elements of a missing set",
			ops: func(*testing.T) []nft.Op {
				return []nft.Op{setOp(nft.OpAddElements, &nft.Set{Name: "nope"}, clusterIP)}
			},
			errno: unix.ENOENT},
		{name: "flushing a missing chain",
			ops:   func(*testing.T) []nft.Op { return []nft.Op{chainOp(nft.OpFlushChain, "nope")} },
			errno: unix.ENOENT},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := synced(t)
			before := f.Dump()
			ops := append([]nft.Op{setOp(nft.OpAddElements, clusterIPs, newClusterP)}, tc.ops(t)...)
			err := f.Apply(&nft.Transaction{Ops: ops})
			if tc.errno == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				rs := f.Ruleset()
				if tb := rs.Tables[ip]; tb != nil && tb.Sets.Get(clusterIPs.Name) != nil {
					if _, ok := tb.Sets.Get(clusterIPs.Name).Lookup(newClusterP.KeyString()); !ok {
						t.Error("the transaction's first op is not applied")
					}
				}
				tc.check(t, rs)
				return
			}
			if !errors.Is(err, tc.errno) {
				t.Fatalf("err = %v, want %v", err, tc.errno)
			}
			if want := fmt.Sprintf("of %d (", len(ops)); !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not name the op", err)
			}
			if after := f.Dump(); after != before {
				t.Errorf("refused transaction changed the state:\n%s\nwant\n%s", after, before)
			}
			if err := f.Compare(base(t)); err != nil {
				t.Errorf("after a refused transaction: %v", err)
			}
		})
	}
}
