package conntrack

import "testing"

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
