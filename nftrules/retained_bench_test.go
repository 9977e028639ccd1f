package nftrules_test

import (
	"runtime"
	"testing"

	"github.com/nftproxy/nftproxy/nftrules"
)

// BenchmarkBuilderRetained10kx10 measures what a Builder keeps between
// syncs after building 10k Services x 10 endpoints: the live heap it adds
// (after a full collection), per op and per service port. This is what
// the reconciler and Builder hold for the life of the process (issue 11's
// memory per Service port); allocations during the Build are
// BenchmarkBuild10kx10's business.
func BenchmarkBuilderRetained10kx10(b *testing.B) {
	const n = 10000
	st := scaleState(n, 10)
	var retained uint64
	for b.Loop() {
		before := liveHeap()
		builder := nftrules.NewBuilder()
		rs := builder.Build(st)
		retained += liveHeap() - before
		runtime.KeepAlive(builder)
		runtime.KeepAlive(rs)
	}
	per := float64(retained) / float64(b.N)
	b.ReportMetric(per/1e6, "retained-MB/op")
	b.ReportMetric(per/n, "retained-B/svcport")
}

func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
