package main

import (
	"fmt"
	"strings"
	"testing"
)

// The runs go by growing N over both size lists; a control-plane size
// gets both min-sync periods with every kind of change, a size that is
// also a data-plane one measures the data plane at min-sync-period 0, a
// data-plane-only size one start; iptables mode stops at -iptables-max;
// the burst never asks for more Services than are loaded.
func TestSchedule(t *testing.T) {
	c := &config{sizes: []int{1000, 10000}, dpSizes: []int{1, 1000, 30000}, iptMax: 1000, runs: 1, changes: 20, burst: 1000}
	defs := []*proxy{{name: "nftproxy"}, {name: "kube-proxy iptables"}}
	var got []string
	for _, s := range schedule(c, defs) {
		p := s.plan
		got = append(got, fmt.Sprintf("%s %d %s lone=%d conn=%d stream=%d burst=%d dp=%t dumps=%t",
			s.proxy.name, p.n, p.minSync, p.lone, p.conn, p.stream, p.burst, p.dataPlane, p.dumps))
	}
	want := []string{
		"nftproxy 1 0s lone=0 conn=0 stream=0 burst=0 dp=true dumps=false",
		"kube-proxy iptables 1 0s lone=0 conn=0 stream=0 burst=0 dp=true dumps=false",
		"nftproxy 1000 0s lone=20 conn=20 stream=0 burst=1000 dp=true dumps=true",
		"nftproxy 1000 1s lone=20 conn=20 stream=20 burst=1000 dp=false dumps=false",
		"kube-proxy iptables 1000 0s lone=20 conn=20 stream=0 burst=1000 dp=true dumps=true",
		"kube-proxy iptables 1000 1s lone=20 conn=20 stream=20 burst=1000 dp=false dumps=false",
		"nftproxy 10000 0s lone=20 conn=20 stream=0 burst=1000 dp=false dumps=true",
		"nftproxy 10000 1s lone=20 conn=20 stream=20 burst=1000 dp=false dumps=false",
		"nftproxy 30000 0s lone=0 conn=0 stream=0 burst=0 dp=true dumps=false",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	c = &config{dpSizes: []int{1}, runs: 3, iptMax: 1000}
	got = nil
	for _, s := range schedule(c, defs) {
		got = append(got, s.proxy.name)
	}
	if want := "nftproxy,kube-proxy iptables,kube-proxy iptables,nftproxy,nftproxy,kube-proxy iptables"; strings.Join(got, ",") != want {
		t.Errorf("runs must take turns at going first: got %s, want %s", strings.Join(got, ","), want)
	}
	c = &config{sizes: []int{500}, iptMax: 1000, runs: 1, burst: 1000, noMinSync1: true}
	if s := schedule(c, defs[:1]); len(s) != 1 || s[0].plan.burst != 500 {
		t.Errorf("a burst at N=500 must change each Service once: %+v", s)
	}
}
