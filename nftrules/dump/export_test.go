package dump

import "runtime"

// ViewInParts makes the view split every step it can into parts items
// at a time or more, on parts goroutines, until restore is called.
func ViewInParts(parts int) (restore func()) {
	prevMin, prevMax := minParallel, maxParts
	prevProcs := runtime.GOMAXPROCS(max(parts, runtime.GOMAXPROCS(0)))
	minParallel, maxParts = 1, parts
	return func() {
		minParallel, maxParts = prevMin, prevMax
		runtime.GOMAXPROCS(prevProcs)
	}
}
