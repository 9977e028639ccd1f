package nftrules

import "k8s.io/apimachinery/pkg/types"

// SetServicePortsPerEndpointMap changes how many service ports share an
// endpoint map until restore is called (benchmarks of the layout only).
func SetServicePortsPerEndpointMap(n uint32) (restore func()) {
	old := endpointMapShard
	endpointMapShard = n
	return func() { endpointMapShard = old }
}

// NewBuilderOfCollidingServices returns a Builder that keeps the memos of
// all Services in one list, as if all their names' hashes collided.
func NewBuilderOfCollidingServices() *Builder {
	return &Builder{hash: func(types.NamespacedName) uint64 { return 0 }}
}

// SetParallelBuild changes the number of new service ports from which a
// Build makes fragments on several goroutines, and how many one goroutine
// makes at a time, until restore is called.
func SetParallelBuild(minPorts, chunk int) (restore func()) {
	oldMin, oldChunk := parallelMinPorts, fragmentChunk
	parallelMinPorts, fragmentChunk = minPorts, chunk
	return func() { parallelMinPorts, fragmentChunk = oldMin, oldChunk }
}
