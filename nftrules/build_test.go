package nftrules_test

import (
	"flag"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nftproxy/nftproxy/nftrules"
	"github.com/nftproxy/nftproxy/nftrules/nft"
	"github.com/nftproxy/nftproxy/proxier/model"
)

var updateGolden = flag.Bool("update", false, "rewrite nftrules/testdata golden files from the current output")

// goldenState is small but exercises every part of the layout: a
// dual-stack multi-port Service, an IPv4-only UDP Service, and a Service
// without endpoints (rejected), with pod CIDRs in both families.
func goldenState() *model.State {
	return flowCluster(
		servicePort(1, "default/web:http", "tcp", 80, "172.30.0.10,fd00:30::10",
			localEP("10.1.0.2:8080"), readyEP("10.1.0.3:8080"), localEP("[fd00:1::2]:8080")),
		servicePort(2, "default/web:https", "tcp", 443, "172.30.0.10,fd00:30::10",
			localEP("10.1.0.2:8443"), readyEP("10.1.0.3:8443"), localEP("[fd00:1::2]:8443")),
		servicePort(3, "kube-system/dns:dns", "udp", 53, "172.30.0.53", localEP("10.1.0.20:53")),
		servicePort(4, "default/empty", "tcp", 80, "172.30.0.99,fd00:30::99"),
	)
}

func TestBuildGolden(t *testing.T) {
	got := nftrules.Build(goldenState()).Render()
	path := filepath.Join("testdata", "build-golden.nft")
	if *updateGolden {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run TestBuildGolden -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("Build(goldenState()).Render() differs from %s (rerun with -update if intended):\n%s", path, lineDiff(string(want), got))
	}
}

func TestBuildIsDeterministic(t *testing.T) {
	first := nftrules.Build(goldenState()).Render()
	for i := range 20 {
		st := goldenState()
		r := rand.New(rand.NewPCG(uint64(i), 1))
		r.Shuffle(len(st.Services), func(a, b int) { st.Services[a], st.Services[b] = st.Services[b], st.Services[a] })
		if got := nftrules.Build(st).Render(); got != first {
			t.Fatalf("Build with services in another order renders differently:\n%s", lineDiff(first, got))
		}
	}
}

// TestBuildChangeIsLocal: changing one service port's endpoints changes
// its own chain and its own elements only, so that syncs stay small.
func TestBuildChangeIsLocal(t *testing.T) {
	before := goldenState()
	after := goldenState()
	web := after.Services[0] // default/web:http, ID 1
	web.Endpoints = []model.Endpoint{readyEP("10.1.0.3:8080"), localEP("10.1.0.4:8080"), localEP("[fd00:1::2]:8080")}

	// Same endpoint count: the chain (numgen mod 2) is unchanged; only the
	// service's entries of the endpoint map (IDs 1<<14...) and the hairpin
	// pair of the new local endpoint change. 10.1.0.2 stays in the hairpin
	// set as an endpoint of default/web:https; 10.1.0.3 is on another node
	// and has no hairpin pair.
	want := []string{
		"ip endpoints-tcp-0 16384",
		"ip endpoints-tcp-0 16385",
		"ip hairpin 10.1.0.4 . 10.1.0.4",
	}
	if changed := changes(nftrules.Build(before), nftrules.Build(after)); !slices.Equal(changed, want) {
		t.Errorf("changed objects:\n  %s\nwant:\n  %s", strings.Join(changed, "\n  "), strings.Join(want, "\n  "))
	}
}

// TestBuildEndpointCountChangeIsLocal: a different endpoint count rewrites
// the service chain (numgen modulus) of that family only.
func TestBuildEndpointCountChangeIsLocal(t *testing.T) {
	before := goldenState()
	after := goldenState()
	web := after.Services[0]
	web.Endpoints = append(web.Endpoints, localEP("10.1.0.5:8080"))

	changed := changes(nftrules.Build(before), nftrules.Build(after))
	want := []string{
		"ip chain " + nftrules.ServiceChainName(web.Name),
		"ip endpoints-tcp-0 16386",
		"ip hairpin 10.1.0.5 . 10.1.0.5",
	}
	if !slices.Equal(changed, want) {
		t.Errorf("changed objects:\n  %s\nwant:\n  %s", strings.Join(changed, "\n  "), strings.Join(want, "\n  "))
	}
}

// changes lists the chains (by rendered rules) and set elements (by key
// and value) that differ between two rulesets, as "family chain name" and
// "family set key", sorted.
func changes(a, b *nft.Ruleset) []string {
	var out []string
	for _, f := range nft.Families {
		ta, tb := a.Table(f), b.Table(f)
		for _, name := range unionKeys(maps.Collect(ta.Chains.All()), maps.Collect(tb.Chains.All())) {
			if renderChain(ta.Chains.Get(name), f) != renderChain(tb.Chains.Get(name), f) {
				out = append(out, string(f)+" chain "+name)
			}
		}
		for _, name := range unionKeys(maps.Collect(ta.Sets.All()), maps.Collect(tb.Sets.All())) {
			sa, sb := ta.Sets.Get(name), tb.Sets.Get(name)
			if sa == nil || sb == nil || !sa.SameShape(sb) {
				out = append(out, string(f)+" set "+name)
				continue
			}
			for _, key := range unionKeys(sa.Elements(), sb.Elements()) {
				ea, okA := sa.Lookup(key)
				eb, okB := sb.Lookup(key)
				if okA != okB || !ea.Equal(eb) {
					out = append(out, string(f)+" "+name+" "+key)
				}
			}
		}
	}
	slices.Sort(out)
	return out
}

func renderChain(c *nft.Chain, f nft.Family) string {
	if c == nil {
		return "<none>"
	}
	var b strings.Builder
	if c.Base != nil {
		b.WriteString(string(c.Base.Type) + " " + string(c.Base.Hook) + "\n")
	}
	for _, r := range c.Rules {
		b.WriteString(r.Render(f) + "\n")
	}
	return b.String()
}

func unionKeys[V any](a, b map[string]V) []string {
	keys := slices.Collect(maps.Keys(a))
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// lineDiff shows the lines only in want (-) and only in got (+), in order.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for _, l := range w {
		if !slices.Contains(g, l) {
			b.WriteString("- " + l + "\n")
		}
	}
	for _, l := range g {
		if !slices.Contains(w, l) {
			b.WriteString("+ " + l + "\n")
		}
	}
	return b.String()
}
