package dump

import (
	"runtime"
	"sync"
)

// The view of 10k Services parses 30k rules and follows 20k chains to
// 100k endpoints: pure work over read-only input, split over the cores
// (at most maxParts) in contiguous parts whose results are put together
// in order, so the view is the same as made in line.
var (
	// minParallel is the number of items below which the work stays in
	// line (a variable for the tests, which compare both ways).
	minParallel = 512
	// maxParts bounds the goroutines of one step.
	maxParts = 4
)

// part is the items lo..hi-1 of a step.
type part struct{ lo, hi int }

// partsOf splits n items into one part per core (one part when n is
// small or there is one core).
func partsOf(n int) []part {
	k := min(runtime.GOMAXPROCS(0), maxParts)
	if n < minParallel || k < 2 {
		k = 1
	}
	parts := make([]part, 0, k)
	for i := range k {
		parts = append(parts, part{lo: n * i / k, hi: n * (i + 1) / k})
	}
	return parts
}

// eachPart calls fn for every part, each on its own goroutine but the
// last, which runs on the caller's, and returns when all are done.
func eachPart(parts []part, fn func(i int, p part)) {
	var wg sync.WaitGroup
	for i, p := range parts[:len(parts)-1] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(i, p)
		}()
	}
	fn(len(parts)-1, parts[len(parts)-1])
	wg.Wait()
}
