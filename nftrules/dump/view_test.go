package dump_test

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"

	"github.com/nftproxy/nftproxy/nftrules"
	"github.com/nftproxy/nftproxy/nftrules/dump"
	"github.com/nftproxy/nftproxy/nftrules/nft"
	"github.com/nftproxy/nftproxy/proxier/model"
	"github.com/nftproxy/nftproxy/proxier/model/modeltest"
)

// port returns the service port "ns/name:portname" with endpoints "addr:port".
func port(id uint32, name string, proto v1.Protocol, p uint16, clusterIPs string, eps ...string) *model.ServicePort {
	sp := modeltest.ServicePort(id, name, proto, p, clusterIPs)
	for _, e := range eps {
		sp.Endpoints = append(sp.Endpoints, modeltest.Ready(e))
	}
	return sp
}

func testState() *model.State {
	return &model.State{
		NodeName:     "node",
		ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("fd44::/64")},
		Services: []*model.ServicePort{
			port(1, "default/web:http", v1.ProtocolTCP, 80, "10.96.0.10,fd96::10", "10.244.1.10:8080", "10.244.1.11:8080", "[fd44::10]:8080"),
			port(2, "default/web:https", v1.ProtocolTCP, 443, "10.96.0.10,fd96::10", "10.244.1.10:8443"),
			port(3, "kube-system/dns:dns", v1.ProtocolUDP, 53, "10.96.0.53", "10.244.1.20:53", "10.244.1.21:53"),
			port(70, "kube-system/dns:sig", v1.ProtocolSCTP, 3868, "10.96.0.53", "10.244.1.20:3868"),
			port(4, "test/empty", v1.ProtocolTCP, 80, "10.96.0.99,fd96::99"),
			port(5, "test/"+strings.Repeat("long", 30), v1.ProtocolTCP, 81, "10.96.0.81", "10.244.1.81:81"),
		},
	}
}

// TestViewOfBuildHasEveryAddressAndEndpoint checks the reconstruction
// against the model it was built from.
func TestViewOfBuildHasEveryAddressAndEndpoint(t *testing.T) {
	st := testState()
	d := dump.FromRuleset(nftrules.Build(st), nil)
	checkViewMatchesState(t, d, st, false)
	for _, tb := range d.Tables {
		if len(tb.Problems) > 0 {
			t.Errorf("table %s: problems %v", tb.Family, tb.Problems)
		}
		want := dump.Masquerade{Mode: dump.MasqueradeOffCluster, ClusterCIDRs: []string{"10.244.0.0/16"}}
		if tb.Family == "ip6" {
			want.ClusterCIDRs = []string{"fd44::/64"}
		}
		if tb.Masquerade.Mode != want.Mode || !slices.Equal(tb.Masquerade.ClusterCIDRs, want.ClusterCIDRs) {
			t.Errorf("table %s masquerade = %+v, want %+v", tb.Family, tb.Masquerade, want)
		}
	}
	// With names, the port without endpoints is named too.
	d = dump.FromRuleset(nftrules.Build(st), dump.NamesOf(st))
	checkViewMatchesState(t, d, st, true)
}

// checkViewMatchesState: every ClusterIP and endpoint of st is in d under
// its Service port's name (ports without endpoints only when named).
func checkViewMatchesState(t *testing.T, d *dump.Dump, st *model.State, named bool) {
	t.Helper()
	find := func(sp *model.ServicePort) *dump.ServicePort {
		for i := range d.Services {
			s := &d.Services[i]
			if s.Port != sp.Port || s.Protocol != string(sp.Protocol) {
				continue
			}
			if s.Namespace == sp.Name.Namespace && s.Name == sp.Name.Name && s.PortName == sp.Name.Port {
				return s
			}
			if s.NameTruncated && strings.HasPrefix(sp.Name.Name, s.Name) {
				return s
			}
		}
		return nil
	}
	ports := 0
	for _, sp := range st.Services {
		if len(sp.Endpoints) == 0 && !named {
			continue
		}
		ports++
		got := find(sp)
		if got == nil {
			t.Errorf("%s missing from the view", sp.Name)
			continue
		}
		if len(got.Problems) > 0 {
			t.Errorf("%s: problems %v", sp.Name, got.Problems)
		}
		for _, ip := range sp.ClusterIPs {
			f := nft.FamilyOf(ip)
			if !named && !slices.ContainsFunc(sp.Endpoints, func(e model.Endpoint) bool { return nft.FamilyOf(e.Addr) == f }) {
				continue // no endpoints in this family: the kernel records no name
			}
			i := slices.IndexFunc(got.Frontends, func(fe dump.Frontend) bool { return fe.Address == ip.String() })
			if i < 0 {
				t.Errorf("%s: cluster IP %s missing: %+v", sp.Name, ip, got.Frontends)
				continue
			}
			fe := got.Frontends[i]
			var want []string
			for _, e := range sp.Endpoints {
				if nft.FamilyOf(e.Addr) == f {
					want = append(want, e.AddrPort().String())
				}
			}
			var have []string
			for _, e := range fe.Endpoints {
				have = append(have, e.String())
			}
			wantStatus, wantKind := dump.StatusActive, dump.KindClusterIP
			if len(want) == 0 {
				wantStatus = dump.StatusNoEndpoints
			}
			if fe.Status != wantStatus || fe.Kind != wantKind || fe.Port != sp.Port || fe.Family != string(f) || !slices.Equal(have, want) {
				t.Errorf("%s %s: %+v, want %s %s endpoints %v", sp.Name, f, fe, wantKind, wantStatus, want)
			}
		}
	}
	if !named {
		return
	}
	if len(d.Services) != ports {
		t.Errorf("view has %d service ports, want %d", len(d.Services), ports)
	}
}

func TestCompareFlagsDrift(t *testing.T) {
	programmed := testState()
	apiState := testState()
	// The API moved an endpoint of web:http, removed dns:sig, added a
	// Service, and lost the endpoints of web:https.
	moved := *apiState.Services[0]
	moved.Endpoints = slices.Clone(moved.Endpoints)
	moved.Endpoints[1].Addr = netip.MustParseAddr("10.244.1.12")
	apiState.Services[0] = &moved
	https := *apiState.Services[1]
	https.Endpoints = nil
	apiState.Services[1] = &https
	apiState.Services = slices.Delete(apiState.Services, 3, 4)
	apiState.Services = append(apiState.Services, port(9, "test/new", v1.ProtocolUDP, 9, "10.96.0.9", "10.244.1.9:9"))
	apiState.MasqueradeAll = true

	names := dump.NamesOf(apiState)
	live := dump.FromRuleset(nftrules.Build(programmed), names)
	dump.Compare(live, dump.FromRuleset(nftrules.Build(apiState), names), apiState, true)

	drift := map[string]string{}
	for _, sp := range live.Services {
		drift[sp.Namespace+"/"+sp.Name+":"+sp.PortName] = strings.Join(sp.Drift, "; ")
	}
	for name, want := range map[string]string{
		"default/web:http":    "ip 10.96.0.10: endpoints programmed but not in the API: 10.244.1.11:8080; ip 10.96.0.10: endpoints in the API but not programmed: 10.244.1.12:8080",
		"default/web:https":   "ip 10.96.0.10: DNAT to 1 endpoint(s), the API wants no endpoints (reject); ip6 fd96::10: no endpoints (reject), the API wants no endpoints (reject)",
		"kube-system/dns:dns": "",
		"kube-system/dns:sig": "programmed, but the API has no such Service port (or gives it nothing to program): stale rules",
		"test/empty:":         "",
		"test/new:":           "ip 10.96.0.9: not programmed; the API wants DNAT to 1 endpoint(s)",
	} {
		got, ok := drift[name]
		if !ok {
			t.Errorf("%s not in the view", name)
			continue
		}
		if name == "default/web:https" {
			// ip6 had no endpoints either way: only ip differs.
			want = "ip 10.96.0.10: DNAT to 1 endpoint(s), the API wants no endpoints (reject)"
		}
		if got != want {
			t.Errorf("%s drift:\n got %q\nwant %q", name, got, want)
		}
	}
	for _, tb := range live.Tables {
		if len(tb.Drift) != 1 || !strings.Contains(tb.Drift[0], "the configuration wants all") {
			t.Errorf("table %s drift %v, want the masquerade change", tb.Family, tb.Drift)
		}
	}
	for _, sp := range live.Services {
		if sp.API == nil && sp.Name != "dns" {
			t.Errorf("%s/%s: no API facts", sp.Namespace, sp.Name)
		}
	}

	// Same state on both sides: no drift at all.
	names = dump.NamesOf(programmed)
	same := dump.FromRuleset(nftrules.Build(programmed), names)
	dump.Compare(same, dump.FromRuleset(nftrules.Build(programmed), names), programmed, true)
	for _, sp := range same.Services {
		if len(sp.Drift) > 0 {
			t.Errorf("%s/%s: drift %v with identical states", sp.Namespace, sp.Name, sp.Drift)
		}
	}
}

// TestViewReportsBrokenLiveState: a live ruleset with a missing endpoint
// entry, an entry no chain uses and a foreign rule (another process's
// change to the kernel, read back as the reconciler reads it) is
// reported, not hidden.
func TestViewReportsBrokenLiveState(t *testing.T) {
	rs := brokenLive(t)
	d := dump.FromRuleset(rs, nil)
	var problems []string
	for _, sp := range d.Services {
		problems = append(problems, sp.Problems...)
	}
	for _, tb := range d.Tables {
		problems = append(problems, tb.Problems...)
	}
	all := strings.Join(problems, "\n")
	for _, want := range []string{"rule 2 is not nftproxy's", "unknown statement", "@endpoints-tcp-0 has no entry 16385 (want 16384..16385)", "@endpoints-tcp-0 holds 1 entries no service chain uses"} {
		if !strings.Contains(all, want) {
			t.Errorf("problems lack %q:\n%s", want, all)
		}
	}
}

// TestViewExternalFrontendsAndAffinity covers the layouts beyond plain
// ClusterIPs: node ports, external and load-balancer IPs, session
// affinity, and Local traffic policies.
func TestViewExternalFrontendsAndAffinity(t *testing.T) {
	st := testState()
	local := func(sp *model.ServicePort, i int) { sp.Endpoints[i].NodeName = "node" }
	np := port(10, "ext/np", v1.ProtocolTCP, 80, "10.96.1.10", "10.244.1.10:80", "10.244.2.10:80")
	np.NodePort, np.ExternalIPs = 30080, []netip.Addr{netip.MustParseAddr("192.0.2.10")}
	aff := port(11, "ext/aff", v1.ProtocolTCP, 80, "10.96.1.11", "10.244.1.11:80", "10.244.2.11:80")
	aff.SessionAffinityClientIP, aff.AffinityTimeoutSeconds = true, 600
	etp := port(12, "ext/etp", v1.ProtocolTCP, 80, "10.96.1.12", "10.244.1.12:80", "10.244.2.12:80")
	etp.NodePort, etp.ExternalPolicyLocal, etp.LoadBalancerIPs = 30012, true, []netip.Addr{netip.MustParseAddr("192.0.2.12")}
	local(etp, 0)
	itp := port(13, "ext/itp", v1.ProtocolTCP, 80, "10.96.1.13", "10.244.2.13:80")
	itp.InternalPolicyLocal = true // no local endpoint: dropped
	st.Services = append(st.Services, np, aff, etp, itp)

	for _, names := range []dump.Names{nil, dump.NamesOf(st)} {
		d := dump.FromRuleset(nftrules.Build(st), names)
		got := map[string]string{}
		for _, sp := range d.Services {
			if len(sp.Problems) > 0 {
				t.Errorf("%s/%s: problems %v", sp.Namespace, sp.Name, sp.Problems)
			}
			for _, fe := range sp.Frontends {
				var eps []string
				for _, e := range fe.Endpoints {
					eps = append(eps, e.String())
				}
				got[sp.Namespace+"/"+sp.Name+" "+fe.Kind+" "+fe.Address+fmt.Sprintf(":%d", fe.Port)] =
					fmt.Sprintf("%s %v src=%v aff=%d", fe.Status, eps, fe.SourceDependent, fe.AffinityTimeoutSeconds)
			}
		}
		itpKey, itpWant := "/ clusterIP 10.96.1.13:80", "drop [] src=false aff=0" // unnamed without the API
		if names != nil {
			itpKey = "ext/itp clusterIP 10.96.1.13:80"
		}
		for k, want := range map[string]string{
			"ext/np clusterIP 10.96.1.10:80":   "active [10.244.1.10:80 10.244.2.10:80] src=false aff=0",
			"ext/np externalIP 192.0.2.10:80":  "active [10.244.1.10:80 10.244.2.10:80] src=false aff=0",
			"ext/np nodePort :30080":           "active [10.244.1.10:80 10.244.2.10:80] src=false aff=0",
			"ext/aff clusterIP 10.96.1.11:80":  "active [10.244.1.11:80 10.244.2.11:80] src=false aff=600",
			"ext/etp clusterIP 10.96.1.12:80":  "active [10.244.1.12:80 10.244.2.12:80] src=false aff=0",
			"ext/etp externalIP 192.0.2.12:80": "active [10.244.1.12:80 10.244.2.12:80] src=true aff=0",
			"ext/etp nodePort :30012":          "active [10.244.1.12:80 10.244.2.12:80] src=true aff=0",
			itpKey:                             itpWant,
		} {
			if got[k] != want {
				t.Errorf("names=%v: %s = %q, want %q", names != nil, k, got[k], want)
			}
		}
		if t.Failed() {
			var b strings.Builder
			_ = d.WriteText(&b)
			t.Logf("%v\n%s", got, b.String())
			return
		}
	}
}

// TestViewBoundsAHugeNumgenModulus: a rule read back with a numgen modulus
// no rule of ours has (mod 4294967295) is a problem, not four billion map
// lookups and as many problems.
func TestViewBoundsAHugeNumgenModulus(t *testing.T) {
	rs := nftrules.Build(testState())
	dns := testState().Services[2]
	chain := rs.Tables[nft.IPv4].Chains.Get(nftrules.ServiceChainName(dns.Name))
	chain.Rules = []nft.Rule{{Stmts: []nft.Stmt{nft.Opaque{Text: "meta l4proto udp dnat ip to numgen random mod 4294967295 offset 49152 map @endpoints-udp-0"}}}}
	d := dump.FromRuleset(rs, nil)
	var problems []string
	for _, sp := range d.Services {
		problems = append(problems, sp.Problems...)
	}
	if !strings.Contains(strings.Join(problems, "\n"), "ip 10.96.0.53: numgen random mod 4294967295 into @endpoints-udp-0: more than") {
		t.Errorf("problems: %q, want one about the modulus", problems)
	}
}

// TestViewReportsLeftOverChains: a Service chain nothing jumps to (left
// over from a Service gone) is a problem; the chains the dispatch sets,
// external chains and endpoint-chain maps lead to are not.
func TestViewReportsLeftOverChains(t *testing.T) {
	rs := nftrules.Build(richState())
	gone := port(99, "gone/web:http", v1.ProtocolTCP, 80, "10.96.9.9", "10.244.9.9:80")
	left := rs.Tables[nft.IPv4].Chain(nftrules.ServiceChainName(gone.Name))
	left.Rules = append(left.Rules, nft.Rule{Stmts: []nft.Stmt{nft.JumpTo(nftrules.ChainMarkForMasquerade)}})

	var unreferenced []string
	for _, p := range problemsOf(dump.FromRuleset(rs, nil)) {
		if strings.Contains(p, "nothing jumps to it") {
			unreferenced = append(unreferenced, p)
		}
	}
	want := []string{"chain " + left.Name + ": nothing jumps to it"}
	if !slices.Equal(unreferenced, want) {
		t.Errorf("chains reported unreferenced: %q, want %q", unreferenced, want)
	}
}
