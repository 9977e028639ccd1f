package conntrack_test

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/nftproxy/nftproxy/e2e/netkit"
	"github.com/nftproxy/nftproxy/nftrules"
)

// TestKernelRepairDeletesFlowsThatMissedDNAT: while another process has
// flushed a Service's chain, a new UDP client's first datagram passes
// without DNAT and makes a conntrack entry without NAT; once the rules are
// restored that entry still keeps the client from the Service. Repaired
// deletes it, and nothing else: a client DNATed before the breakage keeps
// its entry and its backend, and a flow without NAT to an address that is
// no Service's keeps its entry.
func TestKernelRepairDeletesFlowsThatMissedDNAT(t *testing.T) {
	netkit.RequireRoot(t)
	l := newLab(t)
	st := dnsState(0, 1)
	l.program(st, true)
	before := dial(t, l.client, clusterIP)
	backend := ask(t, before)
	if !strings.HasPrefix(backend, "pod") {
		t.Fatalf("before the breakage: %q", backend)
	}

	chain := nftrules.ServiceChainName(slices.Collect(st.All())[0].Name)
	if out, err := l.node.Exec("nft", "flush", "chain", "ip", "nftproxy", chain); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	during := dial(t, l.client, clusterIP)
	if got := ask(t, during); got != "no answer" {
		t.Fatalf("a new client reached %q while the Service's chain was empty", got)
	}
	other := dial(t, l.client, netip.MustParseAddrPort("10.96.0.99:53"))
	ask(t, other)

	if _, err := l.rec.Sync(context.Background(), l.b.Build(st), true); err != nil {
		t.Fatal(err)
	}
	if got := ask(t, during); got != "no answer" {
		t.Fatalf("control: after the repair the client's entry without NAT should still keep it from the Service, got %q", got)
	}
	deleted := l.deleted
	l.cleaner.Repaired(st)
	l.cleaner.Wait()
	if got := ask(t, during); !strings.HasPrefix(got, "pod") {
		t.Errorf("after Repaired the client that started during the breakage reached %q, want a pod", got)
	}
	if got := ask(t, before); got != backend {
		t.Errorf("the client DNATed before the breakage moved from %s to %q", backend, got)
	}
	if n := l.deleted - deleted; n != 1 {
		t.Errorf("Repaired deleted %d entries, want 1 (the flow that missed DNAT)", n)
	}
}
