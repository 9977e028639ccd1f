package app

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"

	"github.com/nftproxy/nftproxy/e2e/netkit"
	"github.com/nftproxy/nftproxy/nftrules/dump"
	"github.com/nftproxy/nftproxy/nftrules/nft"
	"github.com/nftproxy/nftproxy/proxier/localnet"
	"github.com/nftproxy/nftproxy/proxier/model"
)

// cliState is the catalogue of Services the CLI kernel tests program.
func cliState() *model.State {
	return &model.State{
		NodeName:     "node",
		ClusterCIDRs: cliClusterCIDRs,
		Services: []*model.ServicePort{
			cliPort(1, "test/web", v1.ProtocolTCP, 80, "10.96.0.10,fd96::10", 8080, 0, 1, 2),
			cliPort(2, "test/dns:dns", v1.ProtocolUDP, 53, "10.96.0.11,fd96::11", 8080, 1, 2),
			cliPort(3, "test/empty", v1.ProtocolTCP, 80, "10.96.0.12,fd96::12", 8080),
			cliPort(4, "test/self", v1.ProtocolTCP, 81, "10.96.0.13", 8080, 0),
			cliPort(5, "test/web-udp", v1.ProtocolUDP, 80, "10.96.0.10", 8080, 0),
			cliPort(6, "test/sig:diameter", v1.ProtocolSCTP, 3868, "10.96.0.14,fd96::14", 3869, 2),
			cliPort(7, "test/udp-empty", v1.ProtocolUDP, 5353, "10.96.0.15", 8080),
			// Another shard of the endpoint maps.
			cliPort(200, "other/far:p", v1.ProtocolTCP, 8443, "10.96.1.200", 8080, 1),
			nodePortService(),
		},
		NodePortIPs: []netip.Addr{cliNode4, cliNode6},
	}
}

// nodePortService is reachable on node port 30080 of the node's addresses
// and on an external IP routed to the node.
func nodePortService() *model.ServicePort {
	sp := cliPort(8, "test/np", v1.ProtocolTCP, 8000, "10.96.0.20", 8080, 1, 2)
	sp.NodePort = 30080
	sp.ExternalIPs = []netip.Addr{netip.MustParseAddr("203.0.113.10")}
	return sp
}

// checkDumpHasState checks that every cluster IP and endpoint of st is in
// the dump, under its name for ports with endpoints, and as a rejected
// dispatch entry for families without endpoints.
func checkDumpHasState(t *testing.T, d *dump.Dump, st *model.State) {
	t.Helper()
	for _, tb := range d.Tables {
		if len(tb.Problems) > 0 || len(tb.Drift) > 0 {
			t.Errorf("table %s: problems %v drift %v", tb.Family, tb.Problems, tb.Drift)
		}
	}
	for sp := range st.All() {
		for _, ip := range sp.ClusterIPs {
			f := nft.FamilyOf(ip)
			var want []string
			for _, e := range sp.Endpoints {
				if nft.FamilyOf(e.Addr) == f {
					want = append(want, e.AddrPort().String())
				}
			}
			var fe *dump.Frontend
			var owner *dump.ServicePort
			for i := range d.Services {
				s := &d.Services[i]
				for j := range s.Frontends {
					if s.Frontends[j].Address == ip.String() && s.Frontends[j].Port == sp.Port && s.Protocol == string(sp.Protocol) {
						fe, owner = &s.Frontends[j], s
					}
				}
			}
			if fe == nil {
				t.Errorf("%s: %s %d/%s not in the dump", sp.Name, ip, sp.Port, sp.Protocol)
				continue
			}
			if len(owner.Problems) > 0 || len(owner.Drift) > 0 {
				t.Errorf("%s: problems %v drift %v", sp.Name, owner.Problems, owner.Drift)
			}
			if len(want) == 0 {
				if fe.Status != dump.StatusNoEndpoints {
					t.Errorf("%s %s: status %s, want %s", sp.Name, ip, fe.Status, dump.StatusNoEndpoints)
				}
				continue
			}
			if owner.Namespace != sp.Name.Namespace || owner.Name != sp.Name.Name || owner.PortName != sp.Name.Port {
				t.Errorf("%s %s: dumped as %s/%s:%s", sp.Name, ip, owner.Namespace, owner.Name, owner.PortName)
			}
			var have []string
			for _, e := range fe.Endpoints {
				have = append(have, e.String())
			}
			if fe.Status != dump.StatusActive || fe.Kind != dump.KindClusterIP || !slices.Equal(have, want) {
				t.Errorf("%s %s: %s %s %v, want active clusterIP %v", sp.Name, ip, fe.Kind, fe.Status, have, want)
			}
		}
	}
}

func TestKernelDump(t *testing.T) {
	n := newCLINode(t, 0)
	st := cliState()
	n.program(t, st)

	t.Run("json matches the programmed Services and the documented schema", func(t *testing.T) {
		d := decodeDump(t, mustRunCLI(t, n.node, "--dump", "--dump-format=json"))
		if d.SchemaVersion != dump.SchemaVersion || d.ComparedWithAPI || len(d.Tables) != 2 {
			t.Errorf("header: version %d compared %v tables %d", d.SchemaVersion, d.ComparedWithAPI, len(d.Tables))
		}
		checkDumpHasState(t, d, st)
	})

	t.Run("text names every Service, address and endpoint", func(t *testing.T) {
		out := mustRunCLI(t, n.node, "--dump")
		for sp := range st.All() {
			if len(sp.Endpoints) > 0 {
				name := sp.Name.Namespace + "/" + sp.Name.Name
				if sp.Name.Port != "" {
					name += ":" + sp.Name.Port
				}
				if want := fmt.Sprintf("%s %d/%s\n", name, sp.Port, sp.Protocol); !strings.Contains(out, want) {
					t.Errorf("text dump lacks %q", want)
				}
			}
			for _, ip := range sp.ClusterIPs {
				if !strings.Contains(out, " "+netip.AddrPortFrom(ip, sp.Port).String()+" ") {
					t.Errorf("text dump lacks cluster IP %s", ip)
				}
			}
			for _, e := range sp.Endpoints {
				if !strings.Contains(out, "        "+e.AddrPort().String()+"\n") {
					t.Errorf("text dump lacks endpoint %s of %s", e.AddrPort(), sp.Name)
				}
			}
		}
		if !strings.Contains(out, "no endpoints: new connections rejected (TCP reset)") {
			t.Errorf("text dump does not say that test/empty is rejected:\n%s", out)
		}
		if t.Failed() {
			t.Logf("dump:\n%s", out)
		}
	})

	t.Run("dump-service filters", func(t *testing.T) {
		out := mustRunCLI(t, n.node, "--dump", "--dump-service=test/dns", "--dump-format=json")
		var d dump.Dump
		if err := json.Unmarshal([]byte(out), &d); err != nil {
			t.Fatal(err)
		}
		if len(d.Services) != 1 || d.Services[0].Name != "dns" || d.Services[0].PortName != "dns" {
			t.Errorf("--dump-service test/dns gave %+v", d.Services)
		}
	})

	t.Run("nft format is accepted by nft and is the same ruleset", func(t *testing.T) {
		out := mustRunCLI(t, n.node, "--dump", "--dump-format=nft")
		file := filepath.Join(t.TempDir(), "dump.nft")
		if err := os.WriteFile(file, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
		scratch := n.routed.NewNS("scratch")
		if o, err := scratch.Exec("nft", "-c", "-f", file); err != nil {
			t.Fatalf("nft -c -f rejects the dump: %v\n%s\n%s", err, o, out)
		}
		if o, err := scratch.Exec("nft", "-f", file); err != nil {
			t.Fatalf("nft -f: %v\n%s", err, o)
		}
		for _, f := range []string{"ip", "ip6"} {
			want := normalizedListing(t, n.node, f)
			got := normalizedListing(t, scratch, f)
			if got != want {
				t.Errorf("table %s: nft list of the reloaded dump differs from the live table:\n--- live\n%s\n--- reloaded\n%s", f, want, got)
			}
		}
	})

	t.Run("empty after cleanup", func(t *testing.T) {
		other := newCLINode(t, 0)
		out := mustRunCLI(t, other.node, "--dump")
		if !strings.Contains(out, "no nftproxy tables in the kernel") {
			t.Errorf("dump of an empty namespace:\n%s", out)
		}
	})
}

// normalizedListing is `nft list table FAMILY nftproxy` as a set of
// blocks (sets, maps, chains) in name order, whitespace collapsed and set
// elements sorted: nft lists chains in creation order and elements in the
// kernel's hash order, neither of which is part of the ruleset's meaning.
func normalizedListing(t *testing.T, ns *netkit.NS, family string) string {
	t.Helper()
	out := ns.NftList(t, "table", family, nft.TableName)
	var blocks []string
	var cur []string
	for _, line := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(line, "\t") && !strings.HasPrefix(line, "\t\t") && strings.HasSuffix(line, "{"):
			cur = []string{line}
		case line == "\t}":
			cur = append(cur, line)
			blocks = append(blocks, normalizeBlock(strings.Join(cur, " ")))
			cur = nil
		case cur != nil:
			cur = append(cur, line)
		}
	}
	sort.Strings(blocks)
	return strings.Join(blocks, "\n")
}

var elementsRE = regexp.MustCompile(`elements = \{ ([^}]*) \}`)

func normalizeBlock(b string) string {
	b = strings.Join(strings.Fields(b), " ")
	return elementsRE.ReplaceAllStringFunc(b, func(m string) string {
		els := strings.Split(elementsRE.FindStringSubmatch(m)[1], ", ")
		sort.Strings(els)
		return "elements = { " + strings.Join(els, ", ") + " }"
	})
}

// TestKernelDumpComparesWithAPI: checkDumpComparesWithAPI on tables read
// back from the kernel.
func TestKernelDumpComparesWithAPI(t *testing.T) {
	n := newCLINode(t, 0)
	n.program(t, cliState())
	checkDumpComparesWithAPI(t, n.rec)
}

// traceAnswer is the result line of --trace.
type traceAnswer struct {
	outcome string // "DNAT", "accept", "reject", ...
	targets []string
	masq    map[string]bool // per target (or "" when not DNATed)
}

var resultLine = regexp.MustCompile(`(?m)^result: (.*)$`)

func parseTraceResult(t *testing.T, out string) traceAnswer {
	t.Helper()
	m := resultLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no result line in:\n%s", out)
	}
	res := m[1]
	a := traceAnswer{masq: map[string]bool{}}
	rest, isDNAT := strings.CutPrefix(res, "DNAT to ")
	if !isDNAT {
		a.outcome, _, _ = strings.Cut(res, " ")
		a.masq[""] = strings.Contains(res, "(masqueraded)")
		return a
	}
	a.outcome = "DNAT"
	list, masq, _ := strings.Cut(rest, " (masqueraded")
	a.targets = strings.Split(list, ", ")
	switch {
	case strings.Contains(res, "(masqueraded)"):
		for _, tg := range a.targets {
			a.masq[tg] = true
		}
	case strings.Contains(res, "(masqueraded to "):
		for _, tg := range strings.Split(strings.TrimSuffix(strings.TrimPrefix(masq, " to "), ")"), ", ") {
			a.masq[tg] = true
		}
	}
	return a
}

// TestKernelTraceMatchesTraffic asks --trace about a catalogue of packets
// and sends the same connections for real: the backends reached must be
// exactly the trace's targets, masquerade as the trace says, and
// rejections must be refusals.
func TestKernelTraceMatchesTraffic(t *testing.T) {
	n := newCLINode(t, 3)
	st := cliState()
	n.program(t, st)
	n.routed.ServeEcho(8080)
	// backend maps a reply's pod name to the address:port it serves on in
	// the destination's family.
	backend := func(pod string, v6 bool) string {
		var i int
		fmt.Sscanf(pod, "pod%d", &i)
		if v6 {
			return netip.AddrPortFrom(cliPod6(i), 8080).String()
		}
		return netip.AddrPortFrom(cliPod4(i), 8080).String()
	}

	cases := []struct {
		from  *netkit.NS
		src   netip.Addr
		proto string
		dst   string
		want  string // expected trace outcome
	}{
		{n.client, cliClient4, "tcp", "10.96.0.10:80", "DNAT"},
		{n.client, cliClient6, "tcp", "[fd96::10]:80", "DNAT"},
		{n.pods[0], cliPod4(0), "udp", "10.96.0.11:53", "DNAT"},
		{n.pods[0], cliPod6(0), "udp", "[fd96::11]:53", "DNAT"},
		{n.client, cliClient4, "udp", "10.96.0.10:80", "DNAT"},
		{n.pods[0], cliPod4(0), "tcp", "10.96.0.13:81", "DNAT"}, // hairpin
		{n.pods[0], cliPod6(0), "tcp", "[fd96::10]:80", "DNAT"}, // one of three hairpins
		{n.pods[2], cliPod4(2), "tcp", "10.96.1.200:8443", "DNAT"},
		{n.node, cliNode4, "tcp", "10.96.0.10:80", "DNAT"},       // from the node: local-out
		{n.client, cliClient4, "tcp", "10.96.0.12:80", "reject"}, // no endpoints
		{n.client, cliClient6, "tcp", "[fd96::12]:80", "reject"},
		{n.pods[1], cliPod4(1), "udp", "10.96.0.15:5353", "reject"},
		{n.client, cliClient4, "tcp", "10.244.1.11:8080", "accept"}, // not a Service
		{n.client, cliClient4, "tcp", "192.168.60.1:30080", "DNAT"}, // node port
		{n.pods[0], cliPod4(0), "tcp", "203.0.113.10:8000", "DNAT"}, // external IP
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%s %s %s", tc.src, tc.proto, tc.dst), func(t *testing.T) {
			dst := netip.MustParseAddrPort(tc.dst)
			out := mustRunCLI(t, n.node, "--trace", tc.src.String(), tc.dst+"/"+tc.proto)
			ans := parseTraceResult(t, out)
			if ans.outcome != tc.want {
				t.Fatalf("trace outcome %q, want %q:\n%s", ans.outcome, tc.want, out)
			}
			wantPath := "(forwarded)"
			if tc.from == n.node {
				wantPath = "(local-out)"
			}
			if !strings.Contains(out, wantPath) {
				t.Errorf("trace did not pick path %s:\n%s", wantPath, out)
			}
			dial := func() (string, error) {
				if tc.proto == "udp" {
					return tc.from.DialUDP(dst, "hello", time.Second)
				}
				return tc.from.DialTCP(dst, time.Second)
			}
			switch tc.want {
			case "reject":
				start := time.Now()
				_, err := dial()
				if !netkit.IsRefused(err) {
					t.Errorf("trace says reject; the real connection gave %v", err)
				}
				if tc.proto == "tcp" && time.Since(start) > time.Second {
					t.Errorf("refusal took %v", time.Since(start))
				}
				return
			case "accept":
				ans.targets = []string{dst.String()}
				ans.masq = map[string]bool{dst.String(): ans.masq[""]}
			}
			reached := map[string]bool{}
			for i := 0; i < 60 && len(reached) < len(ans.targets); i++ {
				reply, err := dial()
				if err != nil {
					t.Fatalf("trace says %s to %v; the real connection failed: %v", ans.outcome, ans.targets, err)
				}
				f := strings.Fields(reply)
				if len(f) != 2 {
					t.Fatalf("reply %q", reply)
				}
				b := backend(f[0], dst.Addr().Is6())
				reached[b] = true
				if tc.from == n.node {
					continue // the node's own address is the source either way
				}
				masqueraded := f[1] != tc.src.String()
				if masqueraded != ans.masq[b] {
					t.Errorf("backend %s saw source %s (masqueraded %v); trace says masqueraded %v", b, f[1], masqueraded, ans.masq[b])
				}
			}
			got := slices.Sorted(func(yield func(string) bool) {
				for b := range reached {
					if !yield(b) {
						return
					}
				}
			})
			want := slices.Clone(ans.targets)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("real connections reached %v; trace targets %v\n%s", got, want, out)
			}
		})
	}
}

// TestKernelCleanupCLI: --cleanup removes our tables, restores the
// route_localnet nftproxy recorded changing, is idempotent, exits 0, and
// leaves a foreign table byte-for-byte unchanged.
func TestKernelCleanupCLI(t *testing.T) {
	n := newCLINode(t, 0)
	foreign := "table ip other {\n\tset s {\n\t\ttype ipv4_addr\n\t\telements = { 10.96.0.10 }\n\t}\n\tchain c {\n\t\ttype nat hook prerouting priority -100; policy accept;\n\t\tip daddr @s counter\n\t}\n}\ntable ip6 kube-proxy {\n\tchain services {\n\t}\n}\n"
	n.node.NftLoad(t, foreign)
	n.program(t, cliState())
	listForeign := func() string {
		return n.node.NftList(t, "table", "ip", "other") + n.node.NftList(t, "table", "ip6", "kube-proxy")
	}
	before := listForeign()
	// nftproxy had set route_localnet (0 before) for localhost NodePorts.
	state := t.TempDir()
	if err := os.WriteFile(filepath.Join(state, localnet.RecordName), []byte("0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := n.node.Sysctl("net.ipv4.conf.all.route_localnet", "1"); err != nil {
		t.Fatal(err)
	}

	out := mustRunCLI(t, n.node, "--cleanup", "--state-dir="+state)
	for _, want := range []string{"deleted table ip nftproxy", "deleted table ip6 nftproxy", "restored net.ipv4.conf.all.route_localnet=0"} {
		if !strings.Contains(out, want) {
			t.Errorf("--cleanup output lacks %q:\n%s", want, out)
		}
	}
	if v, err := n.node.Exec("cat", "/proc/sys/net/ipv4/conf/all/route_localnet"); err != nil || strings.TrimSpace(string(v)) != "0" {
		t.Errorf("route_localnet after --cleanup: %q %v, want 0", v, err)
	}
	if l, _ := n.node.Exec("nft", "list", "ruleset"); strings.Contains(string(l), "nftproxy") {
		t.Errorf("our tables survived --cleanup:\n%s", l)
	}
	out = mustRunCLI(t, n.node, "--cleanup")
	if !strings.Contains(out, "nothing to clean up") {
		t.Errorf("second --cleanup: %q", out)
	}
	if after := listForeign(); after != before {
		t.Errorf("foreign tables changed:\n%s\nvs\n%s", before, after)
	}
	// And the proxy's reconciler sees nothing of ours.
	live, err := n.rec.ReadLive()
	if err != nil {
		t.Fatal(err)
	}
	if len(live.Tables) != 0 {
		t.Errorf("ReadLive after --cleanup: %d tables", len(live.Tables))
	}
}
