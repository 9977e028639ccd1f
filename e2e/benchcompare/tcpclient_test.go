package main

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/nftproxy/nftproxy/e2e/netkit"
)

// TestTCPClient checks the data-plane client on real sockets in a
// namespace where an nftables DNAT rule plays a Service: connects are
// timed and failures counted, the rate is positive, and the first answer
// from a new backend is found once the rule points at it, and never
// before.
func TestTCPClient(t *testing.T) {
	ns := netkit.NewTestNS(t, "nftbc-tcp-a")
	a, b := netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.3")
	for _, addr := range []netip.Addr{a, b} {
		if err := ns.AddAddr("lo", netip.PrefixFrom(addr, 32)); err != nil {
			t.Fatal(err)
		}
	}
	for name, addr := range map[string]netip.Addr{"pod-a": a, "pod-b": b} {
		srv, err := ns.ServeTCP(netip.AddrPortFrom(addr, 8080), func(r netip.AddrPort) string { return name + " " + r.String() })
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
	}
	// The "ClusterIP" 10.96.0.10:80 is DNATed to pod-a (a route makes it
	// reachable before the rule rewrites it, as the node's default route
	// does).
	if out, err := ns.Exec("ip", "route", "add", "10.96.0.0/16", "dev", "lo"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if out, err := ns.Exec("nft", "add table ip t; add chain ip t out { type nat hook output priority -100; }; "+
		"add rule ip t out ip daddr 10.96.0.10 tcp dport 80 dnat to 10.0.0.2:8080"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	svc := netip.MustParseAddrPort("10.96.0.10:80")

	ms, failed, err := connectSamples(ns, svc, 50)
	if err != nil || failed != 0 || len(ms) != 50 {
		t.Fatalf("50 connects through the rule: %d timed, %d failed, %v", len(ms), failed, err)
	}
	for _, v := range ms {
		if v <= 0 || v > float64(connectTimeout.Milliseconds()) {
			t.Errorf("connect time %v ms out of range", v)
		}
	}
	if _, failed, _ := connectSamples(ns, netip.MustParseAddrPort("10.0.0.2:8081"), 3); failed != 3 {
		t.Errorf("connects to a closed port: %d failed, want 3", failed)
	}
	if rate, failed, err := connectRate(ns, svc, 200*time.Millisecond); err != nil || failed != 0 || rate <= 0 {
		t.Errorf("rate: %v/s, %d failed, %v", rate, failed, err)
	}

	// pod-b never answers while the rule points at pod-a.
	if _, err := firstAnswerFrom(ns, svc, "pod-b", time.Now().Add(100*time.Millisecond), nil); !errors.Is(err, errNoAnswer) {
		t.Fatalf("pod-b answered before the rule pointed at it: %v", err)
	}
	// Switch the rule 50 ms into the wait: the first answer comes after.
	switched := make(chan time.Time, 1)
	go func() {
		time.Sleep(50 * time.Millisecond)
		at := time.Now()
		if out, err := ns.Exec("nft", "flush chain ip t out; add rule ip t out ip daddr 10.96.0.10 tcp dport 80 dnat to 10.0.0.3:8080"); err != nil {
			t.Errorf("%v: %s", err, out)
		}
		switched <- at
	}()
	at, err := firstAnswerFrom(ns, svc, "pod-b", time.Now().Add(5*time.Second), nil)
	// The kernel has the rule before nft exits: wait for it either way.
	switchedAt := <-switched
	if err != nil {
		t.Fatalf("pod-b never answered after the switch: %v", err)
	}
	if at.Before(switchedAt) {
		t.Errorf("first answer at %v, before the switch at %v", at, switchedAt)
	}
	if d := at.Sub(switchedAt); d > time.Second {
		t.Errorf("first answer %v after the switch; the loop tries every millisecond", d)
	}
}
