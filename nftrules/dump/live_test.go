package dump_test

import (
	"context"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"

	"github.com/nftproxy/nftproxy/nftrules"
	"github.com/nftproxy/nftproxy/nftrules/dump"
	"github.com/nftproxy/nftproxy/nftrules/nft"
	"github.com/nftproxy/nftproxy/nftrules/nft/nftfake"
	"github.com/nftproxy/nftproxy/proxier/model"
)

// richState adds to testState the layouts beyond plain ClusterIPs: node
// ports, external and load-balancer IPs, session affinity, Local traffic
// policies (with and without local endpoints).
func richState() *model.State {
	st := testState()
	st.NodeIPs = []netip.Addr{netip.MustParseAddr("192.168.70.1"), netip.MustParseAddr("fd70::1")}
	np := port(10, "ext/np", v1.ProtocolTCP, 80, "10.96.1.10,fd96::1:10", "10.244.1.10:80", "10.244.2.10:80", "[fd44::10]:80")
	np.NodePort, np.ExternalIPs = 30080, []netip.Addr{netip.MustParseAddr("192.0.2.10")}
	aff := port(11, "ext/aff", v1.ProtocolUDP, 53, "10.96.1.11", "10.244.1.11:53", "10.244.2.11:53")
	aff.SessionAffinityClientIP, aff.AffinityTimeoutSeconds = true, 600
	etp := port(12, "ext/etp", v1.ProtocolTCP, 80, "10.96.1.12", "10.244.1.12:80", "10.244.2.12:80")
	etp.NodePort, etp.ExternalPolicyLocal, etp.LoadBalancerIPs = 30012, true, []netip.Addr{netip.MustParseAddr("192.0.2.12")}
	etp.Endpoints[0].NodeName = "node"
	itp := port(13, "ext/itp", v1.ProtocolTCP, 80, "10.96.1.13", "10.244.2.13:80")
	itp.InternalPolicyLocal = true
	empty := port(14, "ext/empty-np", v1.ProtocolTCP, 80, "10.96.1.14")
	empty.NodePort = 30014
	st.Services = append(st.Services, np, aff, etp, itp, empty)
	return st
}

// TestViewOfLiveTablesMatchesBuild: checkViewOfLiveTables on the fake
// kernel (package nftfake), whose ReadLive returns what the reconciler
// reads back; TestKernelViewMatchesBuild does the same with a kernel.
func TestViewOfLiveTablesMatchesBuild(t *testing.T) {
	checkViewOfLiveTables(t, nftfake.New())
}

// liveTables is what the view is made from: *nft.Reconciler, or the fake
// kernel of package nftfake.
type liveTables interface {
	Sync(ctx context.Context, desired *nft.Ruleset, full bool) (nft.SyncResult, error)
	ReadLive() (*nft.Ruleset, error)
}

// checkViewOfLiveTables programs a rich State and checks that the view of
// the live tables (rules read back as text, sets flat) is the view of the
// built ruleset: every address, node port, endpoint, affinity and policy
// survives the round trip.
func checkViewOfLiveTables(t *testing.T, rec liveTables) {
	st := richState()
	built := nftrules.Build(st)
	if _, err := rec.Sync(context.Background(), built, true); err != nil {
		t.Fatal(err)
	}
	live, err := rec.ReadLive()
	if err != nil {
		t.Fatal(err)
	}
	for _, names := range []dump.Names{nil, dump.NamesOf(st)} {
		want := dump.FromRuleset(built, names)
		got := dump.FromRuleset(live, names)
		if !reflect.DeepEqual(got, want) {
			var g, w strings.Builder
			_ = got.WriteText(&g)
			_ = want.WriteText(&w)
			t.Errorf("names=%v: live view differs from the built one:\n--- live\n%s\n--- built\n%s", names != nil, g.String(), w.String())
		}
		for _, sp := range got.Services {
			if len(sp.Problems) > 0 {
				t.Errorf("%s/%s: problems %v", sp.Namespace, sp.Name, sp.Problems)
			}
		}
		for _, tb := range got.Tables {
			if len(tb.Problems) > 0 {
				t.Errorf("table %s: problems %v", tb.Family, tb.Problems)
			}
		}
	}
	// And the API comparison of the live tables with their own State
	// finds nothing.
	names := dump.NamesOf(st)
	d := dump.FromRuleset(live, names)
	dump.Compare(d, dump.FromRuleset(built, names), st, true)
	for _, sp := range d.Services {
		if len(sp.Drift) > 0 {
			t.Errorf("%s/%s: drift %v", sp.Namespace, sp.Name, sp.Drift)
		}
	}
	var text strings.Builder
	_ = d.WriteText(&text)
	for _, want := range []string{
		"ext/aff 53/UDP\n  ip  clusterIP  10.96.1.11:53          DNAT to 2 endpoints, 1/2 each, ClientIP affinity 600 s",
		"  ip  nodePort   *:30080                DNAT to 2 endpoints, 1/2 each",
		"  ip  externalIP 192.0.2.12:80          DNAT to 2 endpoints (which depends on the client: traffic policy Local)",
		"ext/itp 80/TCP\n  ip  clusterIP  10.96.1.13:80          dropped",
		"  ip  nodePort   *:30014                no endpoints: new connections rejected (TCP reset)",
	} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("dump lacks %q:\n%s", want, text.String())
		}
	}
}
