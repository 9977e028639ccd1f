package proxier_test

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"

	"github.com/nftproxy/nftproxy/e2e/netkit"
	"github.com/nftproxy/nftproxy/nftrules"
	"github.com/nftproxy/nftproxy/nftrules/nft"
)

// repairNode is a node namespace with a client in front and one pod
// behind, running a proxier that programs Service test/web
// (10.96.0.10:80/tcp → pod 10.244.1.10:8080), and a host firewall of
// someone else's in the node's ruleset:
//
//	client (192.168.70.2) ── node (192.168.70.1) ── pod (10.244.1.10)
type repairNode struct {
	node, client *netkit.NS
	rec          *nft.Reconciler
	run          *proxierRun
	// firewall is a file with the foreign tables, loaded as a firewall
	// service does: `flush ruleset` first.
	firewall string
}

var repairVIP = netip.MustParseAddrPort("10.96.0.10:80")

const hostFirewall = "flush ruleset\n" +
	"table ip filter {\n\tset blocked {\n\t\ttype ipv4_addr\n\t\telements = { 198.51.100.7 }\n\t}\n" +
	"\tchain input {\n\t\ttype filter hook input priority 0; policy accept;\n\t\tip saddr @blocked counter drop\n\t}\n}\n" +
	"table ip6 kube-proxy {\n\tchain services {\n\t}\n}\n"

func newRepairNode(t *testing.T, prefix string) *repairNode {
	t.Helper()
	mk := func(role string) *netkit.NS { return netkit.NewTestNS(t, prefix+"-"+role) }
	n := &repairNode{node: mk("node"), client: mk("client"), firewall: filepath.Join(t.TempDir(), "firewall.nft")}
	pod := mk("pod")
	node4, client4 := netip.MustParseAddr("192.168.70.1"), netip.MustParseAddr("192.168.70.2")
	pod4, gw4 := netip.MustParseAddr("10.244.1.10"), netip.MustParseAddr("10.244.1.1")
	for _, err := range []error{
		n.node.EnableForwarding(),
		netkit.Link(n.node, "eth0", []netip.Prefix{netip.PrefixFrom(node4, 24)}, n.client, "eth0", []netip.Prefix{netip.PrefixFrom(client4, 24)}),
		n.client.AddDefaultRoute(node4),
		n.node.AddDefaultRoute(client4),
		netkit.ConnectRoutedPod(n.node, "veth0", pod, []netip.Addr{pod4}, []netip.Addr{gw4}),
		os.WriteFile(n.firewall, []byte(hostFirewall), 0o644),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	srv, err := pod.ServeTCP(netip.AddrPortFrom(pod4, 8080), func(netip.AddrPort) string { return "pod" })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	n.nft(t, "-f", n.firewall)

	client := fake.NewClientset(
		&v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}},
		&v1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "test", Name: "web"},
			Spec: v1.ServiceSpec{Type: v1.ServiceTypeClusterIP, ClusterIP: "10.96.0.10", ClusterIPs: []string{"10.96.0.10"},
				Ports: []v1.ServicePort{{Name: "http", Port: 80, Protocol: v1.ProtocolTCP}}},
		},
		&discovery.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: "test", Name: "web-1", Labels: map[string]string{discovery.LabelServiceName: "web"}},
			AddressType: discovery.AddressTypeIPv4,
			Ports:       []discovery.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: ptr.To(v1.ProtocolTCP)}},
			Endpoints:   []discovery.Endpoint{{Addresses: []string{"10.244.1.10"}, Conditions: discovery.EndpointConditions{Ready: ptr.To(true)}}},
		},
	)
	_, n.rec, n.run = startKernelProxier(t, n.node, client)
	n.waitServing(t, 5*time.Second)
	return n
}

func (n *repairNode) nft(t *testing.T, args ...string) {
	t.Helper()
	if out, err := n.node.Exec(append([]string{"nft"}, args...)...); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
}

// waitServing waits until the client reaches the pod through the ClusterIP.
func (n *repairNode) waitServing(t *testing.T, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		reply, err := n.client.DialTCP(repairVIP, 200*time.Millisecond)
		if err == nil && reply == "pod" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not answer: %q, %v", repairVIP, reply, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// repairs returns the ends of the repairs so far, and the count of syncs.
func (n *repairNode) repairs() ([]time.Time, int) {
	n.run.mu.Lock()
	defer n.run.mu.Unlock()
	return slices.Clone(n.run.repairs), n.run.syncs
}

// listForeign lists the node's tables other than ours.
func (n *repairNode) listForeign(t *testing.T) string {
	t.Helper()
	return n.node.NftList(t, "table", "ip", "filter") + n.node.NftList(t, "table", "ip6", "kube-proxy")
}

// TestKernelRepairsForeignChanges breaks our tables in the ways a firewall
// restart or an admin would, with the proxier running, and checks that each
// is repaired within a second (the measured time includes starting nft),
// that the ClusterIP then works again, and that the host's own tables are
// left exactly as their owner made them.
func TestKernelRepairsForeignChanges(t *testing.T) {
	n := newRepairNode(t, "nftk-repair")
	baseline, err := n.rec.ReadLive()
	if err != nil {
		t.Fatal(err)
	}
	foreign := n.listForeign(t)
	chain := nftrules.ServiceChainName(mustName("test", "web", "http"))
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"nft flush ruleset", []string{"flush", "ruleset"}},
		// Puts the host's tables back, as before.
		{"firewall restart (nft -f with flush ruleset)", []string{"-f", n.firewall}},
		{"nft delete table ip nftproxy", []string{"delete", "table", "ip", "nftproxy"}},
		{"nft flush chain (our service chain)", []string{"flush", "chain", "ip", "nftproxy", chain}},
		{"nft delete element (our dispatch entry)", []string{"delete", "element", "ip", "nftproxy", nftrules.SetServiceIPs, "{ 10.96.0.10 . tcp . 80 }"}},
		// A rule without our user data: the full sync must not keep it
		// (it drops the Service's traffic ahead of the dispatch).
		{"nft insert rule (a foreign rule in our dispatch chain)", []string{"insert", "rule", "ip", "nftproxy", nftrules.ChainServices, "ip", "daddr", "10.96.0.10", "drop"}},
		{"nft add rule (a foreign rule in our service chain)", []string{"add", "rule", "ip", "nftproxy", chain, "counter"}},
	} {
		before, _ := n.repairs()
		start := time.Now()
		n.nft(t, tc.args...)
		repaired := before
		for deadline := start.Add(time.Second); len(repaired) == len(before) && time.Now().Before(deadline); {
			time.Sleep(2 * time.Millisecond)
			repaired, _ = n.repairs()
		}
		repaired = repaired[len(before):]
		if len(repaired) == 0 {
			t.Fatalf("%s: not repaired within 1s", tc.name)
		}
		t.Logf("%s: repaired %v after nft started", tc.name, repaired[0].Sub(start).Round(time.Millisecond))
		if repaired[0].Sub(start) > time.Second {
			t.Errorf("%s: repaired after %v, want < 1s", tc.name, repaired[0].Sub(start))
		}
		n.waitServing(t, time.Second)
		live, err := n.rec.ReadLive()
		if err != nil {
			t.Fatal(err)
		}
		if tx := nft.Diff(live, baseline); !tx.Empty() {
			t.Errorf("%s: our tables differ from before after the repair: %d objects", tc.name, tx.Objects())
		}
		// Repairs closer than twice the repair gap apart count as a
		// fight and back off: the next breakage waits that long.
		time.Sleep(600 * time.Millisecond)
	}
	if after := n.listForeign(t); after != foreign {
		t.Errorf("the host's tables changed:\n%s\nwant\n%s", after, foreign)
	}
}

// TestKernelRepairFightIsRateLimited: another writer deletes our table in
// a loop for 3 s. Repairs back off (250 ms, 500 ms, 1 s, ... apart), so
// over the fight they stay a handful, and once it stops the next repair
// brings the Service back.
func TestKernelRepairFightIsRateLimited(t *testing.T) {
	n := newRepairNode(t, "nftk-fight")
	script := filepath.Join(t.TempDir(), "fight.sh")
	if err := os.WriteFile(script, []byte("end=$(( $(date +%s%N) + 3000000000 ))\n"+
		"while [ $(date +%s%N) -lt $end ]; do nft delete table ip nftproxy 2>/dev/null; sleep 0.02; done\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	repairs0, syncs0 := n.repairs()
	start := time.Now()
	if out, err := n.node.Exec("sh", script); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	fight := time.Since(start)
	all, syncs := n.repairs()
	repairs, syncs := len(all)-len(repairs0), syncs-syncs0
	t.Logf("a %v fight cost %d repairs (%d syncs)", fight.Round(time.Millisecond), repairs, syncs)
	// Repairs start at 0, 0.25, 0.75, 1.75, 3.75 s: four in 3 s (five
	// allowing for a slow machine stretching the fight).
	if repairs < 2 || repairs > 5 || syncs > repairs+1 {
		t.Errorf("%d repairs and %d syncs during a %v fight, want 2 to 5 repairs and no other sync", repairs, syncs, fight)
	}
	// The next repair is at most the current gap (2 s) away.
	n.waitServing(t, 3*time.Second)
	if live, err := n.rec.ReadLive(); err != nil || live.Tables[nft.IPv4] == nil {
		t.Errorf("our table after the fight: %v", err)
	}
}

// TestKernelRepairKeepsConnectionsStartedDuringTheBreakage: a connection
// whose SYN passes while our rules are broken gets a conntrack entry
// without DNAT, and its retransmitted SYNs would follow that entry past
// the repaired rules until the client gives up. The repair deletes such
// entries, so a retransmission reaches the pod. The breakage is made to
// last: breaking the rules again right after each repair makes the repair
// pacing wait 250 ms, then 500 ms, so the SYN surely passes before the
// rules are back (on a loaded machine `nft` itself can take that long: an
// attempt whose connection started after the repair is tried again).
func TestKernelRepairKeepsConnectionsStartedDuringTheBreakage(t *testing.T) {
	n := newRepairNode(t, "nftk-ctrep")
	chain := nftrules.ServiceChainName(mustName("test", "web", "http"))
	breakAndWait := func() {
		before, _ := n.repairs()
		n.nft(t, "flush", "chain", "ip", "nftproxy", chain)
		for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(2 * time.Millisecond) {
			if r, _ := n.repairs(); len(r) > len(before) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatal("a breakage was not repaired within 2s")
			}
		}
	}
	for attempt := 1; attempt <= 3; attempt++ {
		breakAndWait()
		breakAndWait()
		before, _ := n.repairs()
		n.nft(t, "flush", "chain", "ip", "nftproxy", chain)
		start := time.Now()
		reply, err := n.client.DialTCP(repairVIP, 4*time.Second)
		took := time.Since(start)
		repairs, _ := n.repairs()
		if len(repairs) == len(before) || !repairs[len(before)].After(start) {
			t.Logf("attempt %d: the breakage was repaired before the connection started; again", attempt)
			time.Sleep(3 * time.Second) // the pacing forgets
			continue
		}
		t.Logf("connection started %v before the repair, answered after %v", repairs[len(before)].Sub(start).Round(time.Millisecond), took.Round(time.Millisecond))
		if err != nil || reply != "pod" {
			t.Errorf("the connection started during the breakage: %q, %v (after %v); want the pod's answer", reply, err, took)
		}
		return
	}
	t.Fatal("in 3 attempts no connection started before the repair: the test proves nothing")
}
