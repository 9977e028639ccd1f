package conntrack

import (
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"runtime/metrics"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/nftproxy/nftproxy/proxier/model"
)

// BenchmarkKernelConntrackChurn measures the cleanup of a CoreDNS-like
// UDP Service whose endpoint changes at every sync, on a node whose
// conntrack table holds a million entries (NFTPROXY_CONNTRACK_BENCH_ENTRIES
// overrides). Run it alone:
//
//	flock /tmp/nftproxy-kernel-tests.lock go test ./proxier/conntrack/ \
//	    -run '^$' -bench KernelConntrackChurn -benchtime 10x -timeout 30m
//
// The table (all IPv4, in a test namespace; nf_conntrack_max is raised
// for the run and restored, see ctmax_test.go):
//
//	60%   TCP flows
//	25%   masqueraded egress UDP flows to outside hosts: 1 in 5 to port
//	      53, 1 in 25 to port 30053 (the NodePort of a Service below)
//	~15%  UDP flows DNATed to 200 other UDP Services (10% of them through
//	      their NodePort)
//	2,000 UDP flows DNATed to the CoreDNS ClusterIP, 1,000 per endpoint
//
// Each round replaces CoreDNS's older endpoint by a new one (and, outside
// the timings, gives the new one 1,000 flows). Sub-benchmarks:
//
//   - sync-path: what a sync pays: NewIndex of the State (201 UDP and
//     2,000 TCP service ports) and the hand-over (Programmed).
//   - cleanup: the background run that follows: walk, judge, delete.
//
// Then, once, the implementation this replaced: the whole table dumped
// into memory by vishvananda/netlink's ConntrackDeleteFilters (it also
// deletes the egress flows to port 30053: its NodePort filter is the port
// alone).
func BenchmarkKernelConntrackChurn(b *testing.B) {
	entries := 1_000_000
	if v := os.Getenv("NFTPROXY_CONNTRACK_BENCH_ENTRIES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			b.Fatal(err)
		}
		entries = n
	}
	ns, cr := testNamespace(b, "nftk-ctb-node") // needs root
	raiseConntrackMax(b, entries+entries/10+10_000)

	sc := newChurnScenario()
	start := time.Now()
	if err := sc.fill(cr, entries); err != nil {
		b.Fatal(err)
	}
	b.Logf("created %d entries in %v", entries, time.Since(start))

	var rows []row
	c, err := NewCleaner(ns.FD(), Options{OnResult: func(r Result) { sc.results <- r }})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	sc.results = make(chan Result, 100)
	// The first hand-over judges every frontend: the start of nftproxy.
	st := sc.state()
	first := measure(func() { c.Programmed(NewIndex(st)); c.Wait() })
	r := <-sc.results
	rows = append(rows, row{"first hand-over after start (every UDP flow judged)", first, r})

	b.Run("sync-path", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			b.StopTimer()
			st := sc.churn(b, cr)
			b.StartTimer()
			c.Programmed(NewIndex(st))
			b.StopTimer()
			c.Wait()
			<-sc.results
			b.StartTimer()
		}
	})
	var cleanups []row
	b.Run("cleanup", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			st := sc.churn(b, cr)
			b.StartTimer()
			m := measure(func() { c.Programmed(NewIndex(st)); c.Wait() })
			r := <-sc.results
			if r.Err != nil || r.Deleted != sc.perEndpoint {
				b.Fatalf("cleanup deleted %d entries (want %d): %v", r.Deleted, sc.perEndpoint, r.Err)
			}
			cleanups = append(cleanups, row{"churn", m, r})
			b.ReportMetric(float64(r.Deleted), "deleted/op")
			b.ReportMetric(float64(r.Seen), "seen/op")
			b.ReportMetric(float64(m.sys.Milliseconds()), "kernel-ms/op")
			b.ReportMetric(float64(m.peakHeap)/1e6, "peak-heap-MB")
		}
	})
	rows = append(rows, summarize("CoreDNS endpoint replaced (median of rounds)", cleanups))
	// Once: it takes seconds and hundreds of MB at a million entries.
	var deleted uint
	before := measure(func() {
		if deleted, err = sc.oldCleanup(ns.FD(), sc.churn(b, cr)); err != nil {
			b.Fatal(err)
		}
	})
	rows = append(rows, row{"before: whole table dumped (vishvananda ConntrackDeleteFilters)", before,
		Result{Walks: 1, Seen: -1, Deleted: int(deleted)}})
	printTable(entries, rows)
}

// churnScenario is the table's content and the Services behind it.
type churnScenario struct {
	dnsIP       netip.Addr
	dnsEps      []netip.AddrPort // current CoreDNS endpoints, oldest first
	next        int              // next new CoreDNS endpoint
	perEndpoint int              // flows per CoreDNS endpoint
	others      []*model.ServicePort
	clientPort  int
	results     chan Result
}

var nodeIP = netip.MustParseAddr("192.168.70.1")

func newChurnScenario() *churnScenario {
	sc := &churnScenario{dnsIP: netip.MustParseAddr("10.96.0.10"), perEndpoint: 1000}
	for i := 0; i < 200; i++ {
		sp := &model.ServicePort{ID: uint32(10 + i), Protocol: "UDP", Port: uint16(5000 + i), NodePort: uint16(30000 + i),
			ClusterIPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 96, 1, byte(i)})}}
		for j := 0; j < 3; j++ {
			sp.Endpoints = append(sp.Endpoints, model.Endpoint{Addr: netip.AddrFrom4([4]byte{10, 245, byte(i), byte(j + 1)}),
				Port: 9000, Ready: true, Serving: true})
		}
		sc.others = append(sc.others, sp)
	}
	for i := 0; i < 2; i++ {
		sc.dnsEps = append(sc.dnsEps, sc.newDNSEndpoint())
	}
	return sc
}

func (sc *churnScenario) newDNSEndpoint() netip.AddrPort {
	sc.next++
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 244, byte(sc.next >> 8), byte(sc.next)}), 53)
}

// state is the node's State: CoreDNS (UDP and TCP), the other UDP
// Services and 2,000 TCP service ports.
func (sc *churnScenario) state() *model.State {
	dns := &model.ServicePort{ID: 1, Protocol: "UDP", Port: 53, ClusterIPs: []netip.Addr{sc.dnsIP}}
	for _, ep := range sc.dnsEps {
		dns.Endpoints = append(dns.Endpoints, model.Endpoint{Addr: ep.Addr(), Port: ep.Port(), Ready: true, Serving: true})
	}
	dnsTCP := *dns
	dnsTCP.ID, dnsTCP.Protocol = 2, "TCP"
	st := &model.State{NodeIPs: []netip.Addr{nodeIP}, NodePortIPs: []netip.Addr{nodeIP},
		Services: append([]*model.ServicePort{dns, &dnsTCP}, sc.others...)}
	for i := 0; i < 2000; i++ {
		st.Services = append(st.Services, &model.ServicePort{ID: uint32(1000 + i), Protocol: "TCP", Port: 80,
			ClusterIPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 97, byte(i >> 8), byte(i)})},
			Endpoints:  []model.Endpoint{{Addr: netip.AddrFrom4([4]byte{10, 246, byte(i >> 8), byte(i)}), Port: 8080, Ready: true, Serving: true}}})
	}
	return st
}

// client returns a fresh client address and port for a flow.
func (sc *churnScenario) client() netip.AddrPort {
	sc.clientPort++
	n := sc.clientPort
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 200 + byte(n>>24&3), byte(n >> 16), byte(n >> 8)}), uint16(1024+n&0xff))
}

// dnsFlows returns n flows to the CoreDNS ClusterIP DNATed to ep.
func (sc *churnScenario) dnsFlows(ep netip.AddrPort, n int) []Entry {
	out := make([]Entry, n)
	for i := range out {
		out[i] = Entry{Proto: unix.IPPROTO_UDP, OrigSrc: sc.client(), OrigDst: netip.AddrPortFrom(sc.dnsIP, 53), DNAT: ep}
	}
	return out
}

// fill creates the table, in batches.
func (sc *churnScenario) fill(cr *Creator, total int) error {
	var batch []Entry
	add := func(e Entry) error {
		batch = append(batch, e)
		if len(batch) < 4096 {
			return nil
		}
		err := cr.Create(batch)
		batch = batch[:0]
		return err
	}
	for _, ep := range sc.dnsEps {
		if err := cr.Create(sc.dnsFlows(ep, sc.perEndpoint)); err != nil {
			return err
		}
	}
	for i := 0; i < total-len(sc.dnsEps)*sc.perEndpoint; i++ {
		e := Entry{Proto: unix.IPPROTO_UDP, OrigSrc: sc.client()}
		switch k := i % 20; {
		case k < 12: // TCP
			e.Proto = unix.IPPROTO_TCP
			e.OrigDst = netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), 443)
		case k < 17: // masqueraded egress UDP
			port := uint16(443)
			switch {
			case i%25 == 0:
				port = 30053
			case i%5 == 0:
				port = 53
			}
			e.OrigDst = netip.AddrPortFrom(netip.AddrFrom4([4]byte{203, 0, byte(i >> 8), byte(i)}), port)
			e.SNAT = nodeIP
		default: // to another UDP Service, by ClusterIP or NodePort
			sp := sc.others[i%len(sc.others)]
			e.OrigDst = netip.AddrPortFrom(sp.ClusterIPs[0], sp.Port)
			if i%10 == 0 {
				e.OrigDst = netip.AddrPortFrom(nodeIP, sp.NodePort)
			}
			e.DNAT = sp.Endpoints[i%len(sp.Endpoints)].AddrPort()
		}
		if err := add(e); err != nil {
			return fmt.Errorf("entry %d: %w", i, err)
		}
	}
	if len(batch) > 0 {
		return cr.Create(batch)
	}
	return nil
}

// churn replaces the older CoreDNS endpoint, gives the new one its flows
// and returns the new State.
func (sc *churnScenario) churn(b *testing.B, cr *Creator) *model.State {
	ep := sc.newDNSEndpoint()
	sc.dnsEps = append(sc.dnsEps[1:], ep)
	if err := cr.Create(sc.dnsFlows(ep, sc.perEndpoint)); err != nil {
		b.Fatal(err)
	}
	return sc.state()
}

// oldCleanup is the replaced implementation's cost: the filter of the
// earlier conntrack.go (ClusterIP by address and port, NodePorts by port
// alone, live = ready or serving) through ConntrackDeleteFilters.
func (sc *churnScenario) oldCleanup(nsFd int, st *model.State) (uint, error) {
	byDst := map[netip.AddrPort]map[netip.AddrPort]bool{}
	byPort := map[uint16]map[netip.AddrPort]bool{}
	for _, sp := range st.Services {
		if sp.Protocol != "UDP" {
			continue
		}
		live := map[netip.AddrPort]bool{}
		for _, ep := range sp.Endpoints {
			live[ep.AddrPort()] = ep.Ready || ep.Serving
		}
		byDst[netip.AddrPortFrom(sp.ClusterIPs[0], sp.Port)] = live
		if sp.NodePort != 0 {
			byPort[sp.NodePort] = live
		}
	}
	h, err := netlink.NewHandleAt(netns.NsHandle(nsFd), unix.NETLINK_NETFILTER)
	if err != nil {
		return 0, err
	}
	defer h.Close()
	return h.ConntrackDeleteFilters(netlink.ConntrackTable, unix.AF_INET, oldFilter{byDst, byPort})
}

type oldFilter struct {
	byDst  map[netip.AddrPort]map[netip.AddrPort]bool
	byPort map[uint16]map[netip.AddrPort]bool
}

func (f oldFilter) MatchConntrackFlow(fl *netlink.ConntrackFlow) bool {
	if fl.Forward.Protocol != unix.IPPROTO_UDP {
		return false
	}
	d, _ := netip.AddrFromSlice(fl.Forward.DstIP)
	s, _ := netip.AddrFromSlice(fl.Reverse.SrcIP)
	dst, src := netip.AddrPortFrom(d.Unmap(), fl.Forward.DstPort), netip.AddrPortFrom(s.Unmap(), fl.Reverse.SrcPort)
	if live, ok := f.byDst[dst]; ok {
		return !live[src]
	}
	if live, ok := f.byPort[dst.Port()]; ok {
		return !live[src]
	}
	return false
}

// measured is what one operation cost.
type measured struct {
	wall, sys, user time.Duration
	allocBytes      uint64
	allocs          uint64
	peakHeap        uint64 // highest heap object bytes above the start
}

// measure runs fn, sampling the heap every millisecond.
func measure(fn func()) measured {
	runtime.GC()
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(sample)
	base := sample[0].Value.Uint64()
	var peak atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(s)
			if v := s[0].Value.Uint64(); v > base && v-base > peak.Load() {
				peak.Store(v - base)
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	var ms0, ms1 runtime.MemStats
	var ru0, ru1 unix.Rusage
	runtime.ReadMemStats(&ms0)
	_ = unix.Getrusage(unix.RUSAGE_SELF, &ru0)
	start := time.Now()
	fn()
	wall := time.Since(start)
	_ = unix.Getrusage(unix.RUSAGE_SELF, &ru1)
	runtime.ReadMemStats(&ms1)
	close(stop)
	wg.Wait()
	return measured{wall: wall,
		sys:        time.Duration(ru1.Stime.Nano() - ru0.Stime.Nano()),
		user:       time.Duration(ru1.Utime.Nano() - ru0.Utime.Nano()),
		allocBytes: ms1.TotalAlloc - ms0.TotalAlloc, allocs: ms1.Mallocs - ms0.Mallocs, peakHeap: peak.Load()}
}

type row struct {
	name string
	m    measured
	r    Result
}

// summarize returns the round with the median wall time.
func summarize(name string, rows []row) row {
	if len(rows) == 0 {
		return row{name: name}
	}
	s := slices.Clone(rows)
	slices.SortFunc(s, func(a, b row) int { return int(a.m.wall - b.m.wall) })
	m := s[len(s)/2]
	m.name = fmt.Sprintf("%s, %d rounds, max %v", name, len(rows), s[len(s)-1].m.wall.Round(time.Millisecond))
	return m
}

func printTable(entries int, rows []row) {
	fmt.Printf("\nconntrack cleanup, %d entries in the table (wall: hand-over to done; kernel/user: CPU of the process;\n"+
		"1 read: longest single recvmsg of a dump, kernel time with bottom halves off on one CPU)\n", entries)
	fmt.Printf("%-70s %9s %9s %8s %8s %8s %10s %10s %10s %10s\n", "run", "wall", "kernel", "user", "walks", "seen", "deleted", "alloc MB", "peak MB", "1 read")
	for _, r := range rows {
		seen := strconv.Itoa(r.r.Seen)
		if r.r.Seen < 0 {
			seen = "all"
		}
		fmt.Printf("%-70s %9v %9v %8v %8d %8s %10d %10.1f %10.1f %10v\n", r.name, r.m.wall.Round(time.Millisecond),
			r.m.sys.Round(time.Millisecond), r.m.user.Round(time.Millisecond), r.r.Walks, seen, r.r.Deleted,
			float64(r.m.allocBytes)/1e6, float64(r.m.peakHeap)/1e6, r.r.LongestRecv.Round(time.Millisecond))
	}
	fmt.Println()
}

// BenchmarkHandOver is the sync path's share of a cleanup without the
// kernel: NewIndex of the churn scenario's State (201 UDP and 2,001 TCP
// service ports) and the plan against the previous Index.
func BenchmarkHandOver(b *testing.B) {
	sc := newChurnScenario()
	prev := NewIndex(sc.state())
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		sc.dnsEps = append(sc.dnsEps[1:], sc.newDNSEndpoint())
		st := sc.state()
		b.StartTimer()
		cur := NewIndex(st)
		if w := plan(cur, prev); len(w.fams[0].replySrcs) != 1 {
			b.Fatalf("plan: %d endpoints to look for, want 1", len(w.fams[0].replySrcs))
		}
		prev = cur
	}
}
