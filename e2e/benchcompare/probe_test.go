package main

import (
	"net/netip"
	"testing"

	"github.com/nftproxy/nftproxy/e2e/netkit"
)

// TestProbe checks the single-element lookup the harness polls with:
// present, absent, missing table, both families, and that an answer never leaves a stray
// reply for the next question (an ACK after a found element once did).
func TestProbe(t *testing.T) {
	ns := netkit.NewTestNS(t, "nftbc-probe-a")
	if out, err := ns.Exec("nft", "add table ip t; add set ip t s { type ipv4_addr . ipv4_addr; }; add element ip t s { 10.0.0.1 . 10.0.0.1 }; "+
		"add table ip6 t; add set ip6 t s { type ipv6_addr . ipv6_addr; }; add element ip6 t s { fd00::1 . fd00::1 }"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	p, err := newProbe(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	key := func(s string) []byte { a := netip.MustParseAddr(s); return concat(addrBytes(a), addrBytes(a)) }
	for i, c := range []struct {
		table, addr string
		want        bool
	}{{"t", "10.0.0.1", true}, {"t", "10.0.0.2", false}, {"t", "10.0.0.1", true}, {"t", "10.0.0.1", true}, {"none", "10.0.0.1", false}, {"t", "10.0.0.1", true},
		{"t", "fd00::1", true}, {"t", "fd00::2", false}, {"t", "10.0.0.1", true}} {
		got, err := p.has(familyOf(netip.MustParseAddr(c.addr)), c.table, "s", key(c.addr))
		if err != nil || got != c.want {
			t.Errorf("question %d (%s in %s): got %t, %v; want %t", i, c.addr, c.table, got, err, c.want)
		}
	}
}
