package conntrack

import (
	"net/netip"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/nftproxy/nftproxy/proxier/model"
)

var (
	ap   = netip.MustParseAddrPort
	addr = netip.MustParseAddr
)

func ready(a string, port uint16) model.Endpoint {
	return model.Endpoint{Addr: addr(a), Port: port, Ready: true, Serving: true}
}

func dnsPort(eps ...model.Endpoint) *model.ServicePort {
	return &model.ServicePort{
		Protocol: "UDP", Port: 53, NodePort: 30053,
		ClusterIPs:      []netip.Addr{addr("10.96.0.10")},
		ExternalIPs:     []netip.Addr{addr("192.0.2.10")},
		LoadBalancerIPs: []netip.Addr{addr("198.51.100.10")},
		Endpoints:       eps,
	}
}

func TestIndexStale(t *testing.T) {
	terminating := model.Endpoint{Addr: addr("10.244.1.3"), Port: 5353, Serving: true, Terminating: true}
	notServing := model.Endpoint{Addr: addr("10.244.1.4"), Port: 5353}
	udp := dnsPort(ready("10.244.1.2", 5353), terminating, notServing)
	onlyTerminating := &model.ServicePort{Protocol: "UDP", Port: 123, ClusterIPs: []netip.Addr{addr("10.96.0.13")},
		Endpoints: []model.Endpoint{terminating}}
	tcp := &model.ServicePort{Protocol: "TCP", Port: 80, ClusterIPs: []netip.Addr{addr("10.96.0.11")}}
	gone := &model.ServicePort{Protocol: "UDP", Port: 514, ClusterIPs: []netip.Addr{addr("10.96.0.12")},
		Endpoints: []model.Endpoint{ready("10.244.2.2", 514)}}
	nodeIPs := []netip.Addr{addr("192.168.50.1")}
	cur := NewIndex(&model.State{NodePortIPs: nodeIPs, Services: []*model.ServicePort{udp, onlyTerminating, tcp}})
	prev := NewIndex(&model.State{NodePortIPs: nodeIPs, Services: []*model.ServicePort{udp, tcp, gone}})
	removed := plan(cur, prev).removed

	cases := []struct {
		name      string
		dst, from string
		stale     bool
	}{
		{"ClusterIP flow to a ready endpoint is kept", "10.96.0.10:53", "10.244.1.2:5353", false},
		{"ClusterIP flow to a terminating endpoint while another is ready is stale (not programmed)", "10.96.0.10:53", "10.244.1.3:5353", true},
		{"ClusterIP flow to a terminating endpoint when none is ready is kept (programmed)", "10.96.0.13:123", "10.244.1.3:5353", false},
		{"ClusterIP flow to an endpoint that is not serving is stale", "10.96.0.10:53", "10.244.1.4:5353", true},
		{"ClusterIP flow to a removed endpoint is stale", "10.96.0.10:53", "10.244.9.9:5353", true},
		{"flow never DNATed (reply from the ClusterIP) is stale", "10.96.0.10:53", "10.96.0.10:53", true},
		{"external IP flow to a removed endpoint is stale", "192.0.2.10:53", "10.244.9.9:5353", true},
		{"load-balancer IP flow to a ready endpoint is kept", "198.51.100.10:53", "10.244.1.2:5353", false},
		{"NodePort flow to a removed endpoint is stale", "192.168.50.1:30053", "10.244.9.9:5353", true},
		{"NodePort flow to a ready endpoint is kept", "192.168.50.1:30053", "10.244.1.2:5353", false},
		{"egress flow to another host's port 30053 is kept", "203.0.113.7:30053", "203.0.113.7:30053", false},
		{"flow to another node's NodePort is kept", "192.168.50.2:30053", "192.168.50.2:30053", false},
		{"flow of a deleted UDP Service to its former endpoint is stale", "10.96.0.12:514", "10.244.2.2:514", true},
		{"flow to a deleted Service's address not DNATed by it is kept", "10.96.0.12:514", "10.96.0.12:514", false},
		{"TCP Service addresses are not judged", "10.96.0.11:80", "10.244.9.9:80", false},
		{"flow to something else is kept", "8.8.8.8:53", "8.8.8.8:53", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := cur.Stale(ap(tc.dst), ap(tc.from), removed); got != tc.stale {
				t.Errorf("Stale(%s, reply from %s) = %v, want %v", tc.dst, tc.from, got, tc.stale)
			}
		})
	}
}

func keys(m map[netip.AddrPort]struct{}) []string {
	var out []string
	for k := range m {
		out = append(out, k.String())
	}
	slices.Sort(out)
	return out
}

func TestPlan(t *testing.T) {
	nodeIPs := []netip.Addr{addr("192.168.50.1"), addr("fd00::1")}
	st := func(sps ...*model.ServicePort) *Index {
		return NewIndex(&model.State{NodePortIPs: nodeIPs, Services: sps})
	}
	a, b, c := ready("10.244.1.2", 53), ready("10.244.1.3", 53), ready("10.244.1.4", 53)
	v6 := &model.ServicePort{Protocol: "UDP", Port: 53, ClusterIPs: []netip.Addr{addr("fd00:96::10")},
		Endpoints: []model.Endpoint{ready("fd00:244::2", 53)}}
	v6moved := &model.ServicePort{Protocol: "UDP", Port: 53, ClusterIPs: []netip.Addr{addr("fd00:96::10")},
		Endpoints: []model.Endpoint{ready("fd00:244::3", 53)}}

	type want struct {
		v4Reply, v4Dst, v6Reply, v6Dst []string
		query4, query6                 Query
	}
	udp4 := Query{Family: unix.AF_INET, Proto: unix.IPPROTO_UDP}
	cases := []struct {
		name       string
		prev, cur  *Index
		want       want
		removedDst string // a frontend that must be in removed
	}{
		{"endpoint replaced: look for the old one only, DNATed, by address and port",
			st(dnsPort(a, b)), st(dnsPort(a, c)),
			want{v4Reply: []string{"10.244.1.3:53"},
				query4: Query{Family: unix.AF_INET, Proto: unix.IPPROTO_UDP, ReplySrc: addr("10.244.1.3"), ReplySrcPort: 53, StatusMask: ipsDstNAT, StatusValue: ipsDstNAT}}, ""},
		{"two endpoints removed: their common port",
			st(dnsPort(a, b, c)), st(dnsPort(a)),
			want{v4Reply: []string{"10.244.1.3:53", "10.244.1.4:53"},
				query4: Query{Family: unix.AF_INET, Proto: unix.IPPROTO_UDP, ReplySrcPort: 53, StatusMask: ipsDstNAT, StatusValue: ipsDstNAT}}, ""},
		{"endpoint added: nothing to look for", st(dnsPort(a)), st(dnsPort(a, b)), want{}, ""},
		{"first endpoint: every flow to every frontend, NodePort on each node address",
			st(dnsPort()), st(dnsPort(a)),
			want{v4Dst: []string{"10.96.0.10:53", "192.0.2.10:53", "192.168.50.1:30053", "198.51.100.10:53"}, query4: udp4}, ""},
		{"Service gone: its former endpoints, and its frontends kept for judging",
			st(dnsPort(a)), st(),
			want{v4Reply: []string{"10.244.1.2:53"},
				query4: Query{Family: unix.AF_INET, Proto: unix.IPPROTO_UDP, ReplySrc: addr("10.244.1.2"), ReplySrcPort: 53, StatusMask: ipsDstNAT, StatusValue: ipsDstNAT}},
			"192.168.50.1:30053"},
		{"IPv6 endpoint replaced: no IPv6 address in the kernel filter",
			st(v6), st(v6moved),
			want{v6Reply: []string{"[fd00:244::2]:53"},
				query6: Query{Family: unix.AF_INET6, Proto: unix.IPPROTO_UDP, ReplySrcPort: 53, StatusMask: ipsDstNAT, StatusValue: ipsDstNAT}}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := plan(tc.cur, tc.prev)
			got := want{keys(w.fams[0].replySrcs), keys(w.fams[0].dsts), keys(w.fams[1].replySrcs), keys(w.fams[1].dsts), Query{}, Query{}}
			if !w.fams[0].empty() {
				got.query4 = w.fams[0].query(unix.AF_INET)
			}
			if !w.fams[1].empty() {
				got.query6 = w.fams[1].query(unix.AF_INET6)
			}
			if !slices.Equal(got.v4Reply, tc.want.v4Reply) || !slices.Equal(got.v4Dst, tc.want.v4Dst) ||
				!slices.Equal(got.v6Reply, tc.want.v6Reply) || !slices.Equal(got.v6Dst, tc.want.v6Dst) ||
				got.query4 != tc.want.query4 || got.query6 != tc.want.query6 {
				t.Errorf("plan:\n got  %+v\n want %+v", got, tc.want)
			}
			if tc.removedDst != "" {
				if _, ok := w.removed.lookup(ap(tc.removedDst)); !ok {
					t.Errorf("removed frontends lack %s", tc.removedDst)
				}
			}
		})
	}
	if w := plan(st(dnsPort(a)), nil); len(w.fams[0].dsts) != 4 {
		t.Errorf("first hand-over: %v frontends to judge, want all 4", keys(w.fams[0].dsts))
	}
}

func TestEncodeParseRoundTrip(t *testing.T) {
	// A dump answer carries the same tuple attributes a delete request
	// sends: build a request and read it back as an entry.
	var m builder
	m.begin(ctMsgDelete, 0, 1, unix.AF_INET6)
	encodeTuple(&m, ctaTupleOrig, unix.IPPROTO_UDP, ap("[fd00::1]:40000"), ap("[fd00:96::10]:53"))
	encodeTuple(&m, ctaTupleReply, unix.IPPROTO_UDP, ap("[fd00:244::2]:5353"), ap("[fd00::1]:40000"))
	m.attr32(ctaStatus, ipsDstNAT|ipsAssured)
	m.attr16(ctaZone, 7)
	m.attr32(ctaID, 0xdeadbeef)
	m.end()
	var f Flow
	parseFlow(m.b[nlmsgHdrLen+nfgenHdrLen:], &f)
	want := Flow{Proto: unix.IPPROTO_UDP, OrigSrc: ap("[fd00::1]:40000"), OrigDst: ap("[fd00:96::10]:53"),
		ReplySrc: ap("[fd00:244::2]:5353"), ReplyDst: ap("[fd00::1]:40000"), Status: ipsDstNAT | ipsAssured, Zone: 7, ID: 0xdeadbeef}
	if f != want {
		t.Errorf("parsed %+v\nwant   %+v", f, want)
	}
}
