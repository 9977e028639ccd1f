package nftrules

// SetServicePortsPerEndpointMap changes how many service ports share an
// endpoint map until restore is called (benchmarks of the layout only).
func SetServicePortsPerEndpointMap(n uint32) (restore func()) {
	old := endpointMapShard
	endpointMapShard = n
	return func() { endpointMapShard = old }
}
