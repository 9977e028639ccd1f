package e2e

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/nftproxy/nftproxy/e2e/lab"
	"github.com/nftproxy/nftproxy/e2e/netkit"
	"github.com/nftproxy/nftproxy/nftrules"
	"github.com/nftproxy/nftproxy/nftrules/nft"
)

// Fault suite, scenario 3 (issue 10): someone else changes node-1's
// nftables while a TCP client, a persistent UDP flow and a ClientIP-affinity
// client run through node-1's nftproxy: `nft flush ruleset`, `nft delete
// table` of each of our tables, a flushed service chain, a deleted dispatch
// element, and a foreign rule (no nftproxy user data) inserted at the top of
// our dispatch chain, dropping a Service's traffic. A firewalld-like table
// of the host's (chains at other priorities that accept everything, an
// interval set) is there throughout. Each tamper must be repaired within
// 1 s: our tables equal to what they were before (read from the kernel),
// measured from the start of the `nft` command. The host's table must be
// byte-identical at the end (`flush ruleset` removes it too: it is loaded
// again after that step, as a firewall service would). Per step the test
// prints the repair time, when the Service answered again, the failed
// requests of each client and whether the affinity client kept its
// backend. No request may fail.

const tamperRepair = time.Second

// firewalldTable is a host firewall in firewalld's style. No counters and
// no dynamic sets: its listing must not change with traffic.
const firewalldTable = `table inet firewalld {
	set trusted-v4 {
		type ipv4_addr
		flags interval
		elements = { 10.0.0.0/8, 192.168.0.0/16 }
	}
	chain filter_INPUT {
		type filter hook input priority filter + 10; policy accept;
		ct state established,related accept
		iifname "lo" accept
		ip saddr @trusted-v4 accept
		accept
	}
	chain filter_FORWARD {
		type filter hook forward priority filter + 10; policy accept;
		ct state established,related accept
		accept
	}
	chain filter_OUTPUT {
		type filter hook output priority filter + 10; policy accept;
		accept
	}
	chain nat_PREROUTING {
		type nat hook prerouting priority dstnat + 10; policy accept;
	}
	chain nat_POSTROUTING {
		type nat hook postrouting priority srcnat + 10; policy accept;
	}
	chain filter_IN_public {
		tcp dport 22 accept
	}
}
`

// tamperStep is one change of someone else's to node-1's ruleset.
type tamperStep struct {
	name string
	nft  []string // arguments of nft, run in node-1's namespace
	// removesNAT: the step leaves node-1 without any IPv4 nat chain
	// until the repair. The kernel registers its NAT hooks only while a
	// nat chain exists, so meanwhile even an established flow's packets
	// go out untranslated: a UDP datagram sent in that window is lost,
	// and a TCP handshake under way when the hooks go (its SYN-ACK not
	// translated back) can fail too, with kube-proxy as with us. Only
	// requests started in that window may fail.
	removesNAT bool
}

// tamperFigures is what one step measured.
type tamperFigures struct {
	step               string
	start              time.Time
	repaired, answered time.Duration
	removesNAT         bool
	failed             [3]int // TCP, UDP, affinity client
	lostInWindow       int    // requests started while no nat chain existed
	affinity           string // kept / lost
}

func TestFaultTamper(t *testing.T) {
	l := startLab(t, lab.Options{Mode: lab.Routed, Nodes: 3, Prefix: "nftft-"})
	ctx := ctxFor(t)
	deploy(t, ctx, l, pods{"client", 1, []string{"node-1"}}, pods{"affclient", 1, []string{"node-1"}},
		pods{"web", 2, []string{"node-2", "node-3"}}, pods{"sticky", 3, []string{"node-2", "node-3"}})
	web := mustService(t, l, lab.ServiceFor("web", "web", false))
	spec := lab.ServiceFor("sticky", "sticky", false)
	spec.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
	sticky := mustService(t, l, spec)
	for svc, n := range map[string]int{"web": 2, "sticky": 3} {
		if err := l.WaitForEndpoints(ctx, svc, n); err != nil {
			t.Fatal(err)
		}
	}
	webVIP := vip(web, false, lab.SvcPort)
	s := &clusterIPSuite{l: l}
	for _, svc := range []*corev1.Service{web, sticky} {
		s.firstAnswer(t, "client-0", vip(svc, false, lab.SvcPort), lab.TCP, 10*time.Second)
	}
	s.firstAnswer(t, "client-0", webVIP, lab.UDP, 10*time.Second)

	node, err := l.NS("node-1")
	if err != nil {
		t.Fatal(err)
	}
	fw := &hostFirewall{ns: node}
	fw.load(t)
	fwBefore := fw.list(t)

	rec := nftrules.NewReconciler(nft.Options{NetNSFd: node.FD()})
	defer rec.Close()
	baseline := readOurTables(t, rec)
	d, err := kernelView(l, "node-1")
	if err != nil {
		t.Fatal(err)
	}
	webFE := frontend(d, webVIP.Addr().String(), lab.SvcPort, "TCP")
	if webFE == nil || webFE.Chain == "" {
		t.Fatalf("web's frontend %v not in node-1's kernel: %+v", webVIP, webFE)
	}

	steps := []tamperStep{
		{"nft flush ruleset", []string{"flush", "ruleset"}, true},
		{"nft delete table ip nftproxy", []string{"delete", "table", "ip", "nftproxy"}, true},
	}
	if baseline.Tables[nft.IPv6] != nil {
		steps = append(steps, tamperStep{"nft delete table ip6 nftproxy", []string{"delete", "table", "ip6", "nftproxy"}, false})
	} else {
		t.Logf("node-1 has no ip6 nftproxy table: no ip6 step")
	}
	steps = append(steps,
		tamperStep{"nft flush chain (web's service chain)", []string{"flush", "chain", "ip", "nftproxy", webFE.Chain}, false},
		tamperStep{"nft delete element (web's dispatch entry)", []string{"delete", "element", "ip", "nftproxy",
			nftrules.SetServiceIPs, fmt.Sprintf("{ %s . tcp . %d }", webVIP.Addr(), webVIP.Port())}, false},
		tamperStep{"nft insert rule (foreign drop in our dispatch chain)", []string{"insert", "rule", "ip", "nftproxy",
			nftrules.ChainServices, "ip", "daddr", webVIP.Addr().String(), "drop"}, false},
	)

	tcp := tcpFlow(l, "TCP client", "client-0", webVIP, 20*time.Millisecond, 2*time.Second)
	udp := udpFlow(t, l, "UDP flow", "client-0", webVIP, 50*time.Millisecond, 2*time.Second)
	aff := tcpFlow(l, "affinity client", "affclient-0", vip(sticky, false, lab.SvcPort), 50*time.Millisecond, 2*time.Second)
	flows := []*flow{tcp, udp, aff}
	defer func() {
		for _, f := range flows {
			f.stop()
		}
	}()
	time.Sleep(time.Second) // the affinity client has its backend

	logStart := logSize(l, "node-1")
	var figs []tamperFigures
	for _, st := range steps {
		before := statsOf(flows)
		start := time.Now()
		if out, err := node.Exec(append([]string{"nft"}, st.nft...)...); err != nil {
			t.Fatalf("%s: %v\n%s", st.name, err, out)
		}
		answered := make(chan time.Duration, 1)
		go func() { answered <- answerAgain(l, webVIP, start) }()
		// within measures from its own start, after nft returned.
		repaired := time.Since(start)
		repaired += within(t, 10*time.Second, st.name+": our tables as before", func() (bool, string) {
			live, err := rec.ReadLive()
			if err != nil {
				return false, err.Error()
			}
			if tx := nft.Diff(live, baseline); !tx.Empty() {
				return false, fmt.Sprintf("%d objects differ", tx.Objects())
			}
			return true, ""
		})
		ans := <-answered
		if st.nft[0] == "flush" && st.nft[1] == "ruleset" {
			fw.load(t) // the firewall service puts its table back
		}
		// Let the clients run on the repaired rules (a request that
		// started during the breakage may take its full 2 s timeout to
		// fail), and the repair pacing (twice its 250 ms gap) forget
		// this repair.
		time.Sleep(2500 * time.Millisecond)
		figs = append(figs, tamperFigures{step: st.name, removesNAT: st.removesNAT, start: start, repaired: repaired, answered: ans,
			affinity: affinityDuring(before[2], statsOf(flows)[2])})
		t.Logf("%s: repaired %v after nft started, web answered %v, affinity %s",
			st.name, repaired.Round(time.Millisecond), ans.Round(time.Millisecond), figs[len(figs)-1].affinity)
		if repaired > tamperRepair {
			t.Errorf("%s: repaired after %v, want within %v", st.name, repaired, tamperRepair)
		}
	}

	// A failed request counts for the step during which it started. None
	// may fail, except one started while a step had left no nat chain
	// (tamperStep.removesNAT) and before the repair. Otherwise a connection
	// whose first packet passed while our rules were broken has a
	// conntrack entry without DNAT, which the repair deletes, so its
	// retransmission meets the repaired rules.
	for i, fl := range flows {
		st := fl.stop()
		t.Logf("%s: %s; failures: %v", fl.name, st, st.Errors)
		unexcused := 0
		for _, at := range st.FailedAt {
			j := len(figs) - 1
			for j >= 0 && at.Before(figs[j].start) {
				j--
			}
			if j < 0 {
				unexcused++
				continue
			}
			figs[j].failed[i]++
			if figs[j].removesNAT && at.Before(figs[j].start.Add(figs[j].repaired)) {
				figs[j].lostInWindow++
				continue
			}
			unexcused++
		}
		if unexcused > 0 {
			t.Errorf("%s: %d of %d requests failed outside a window without NAT: %v", fl.name, unexcused, st.Requests, st.Errors)
		}
	}
	if st := udp.stats(); len(st.Backends) != 1 {
		t.Errorf("the UDP flow moved between backends: %v", st.Backends)
	}
	if after := fw.list(t); after != fwBefore {
		t.Errorf("the host's firewalld table changed:\n%s\nwant\n%s", after, fwBefore)
	}
	log := logFrom(l, "node-1", logStart)
	repairs := strings.Count(log, "Repairing our nftables tables")
	if n := strings.Count(log, "Sync failed"); n > 0 {
		t.Errorf("%d failed syncs in node-1's log:\n%s", n, grepLines(log, "Sync failed"))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "FIGURES scenario 3 (tampering, %d repairs logged; firewalld table byte-identical: %v)\n", repairs, fw.list(t) == fwBefore)
	fmt.Fprintf(&b, "| step | repaired | web answers | failed TCP / UDP / affinity (of them started without NAT) | affinity |\n|---|---|---|---|---|\n")
	for _, f := range figs {
		fmt.Fprintf(&b, "| %s | %v | %v | %d / %d / %d (%d) | %s |\n", f.step, f.repaired.Round(time.Millisecond),
			f.answered.Round(time.Millisecond), f.failed[0], f.failed[1], f.failed[2], f.lostInWindow, f.affinity)
	}
	fmt.Fprintf(&b, "totals: TCP %s; UDP %s; affinity %s", tcp.stats(), udp.stats(), aff.stats())
	t.Log(b.String())
}

// hostFirewall is the host's own table in node-1 (firewalldTable).
type hostFirewall struct {
	ns *netkit.NS
}

// load creates the table as a firewall service would (nft -f).
func (fw *hostFirewall) load(t *testing.T) {
	t.Helper()
	fw.ns.NftLoad(t, firewalldTable)
}

// list is the table's listing, to compare byte for byte.
func (fw *hostFirewall) list(t *testing.T) string {
	t.Helper()
	return fw.ns.NftList(t, "table", "inet", "firewalld")
}

// readOurTables reads our tables from the kernel, failing the test on error.
func readOurTables(t *testing.T, rec *nft.Reconciler) *nft.Ruleset {
	t.Helper()
	rs, err := rec.ReadLive()
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func statsOf(flows []*flow) []flowStats {
	out := make([]flowStats, len(flows))
	for i, f := range flows {
		out[i] = f.stats()
	}
	return out
}

// answerAgain dials dst from client-0 until it answers and returns how long
// after start that was (a connection dropped by a broken rule would wait
// for TCP's 1 s SYN retransmission: every attempt gives up after 100 ms).
func answerAgain(l *lab.Lab, dst netip.AddrPort, start time.Time) time.Duration {
	for time.Since(start) < 10*time.Second {
		if _, err := l.DialWithin("client-0", dst, lab.TCP, 100*time.Millisecond); err == nil {
			return time.Since(start)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

// affinityDuring tells whether the affinity client stayed on the backend
// it had before a step.
func affinityDuring(before, after flowStats) string {
	var moved []string
	for pod, n := range after.Backends {
		if pod != before.Last && n > before.Backends[pod] {
			moved = append(moved, pod)
		}
	}
	if len(moved) == 0 {
		return "kept"
	}
	return fmt.Sprintf("lost (%s -> %s)", before.Last, strings.Join(moved, ", "))
}
