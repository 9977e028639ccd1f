package proxier

import (
	"container/heap"
	"fmt"
)

// idAllocator hands out small integer IDs in [1, max], lowest free first.
// Low, dense IDs keep the endpoint maps' key space compact, and reusing
// freed IDs keeps the proxy running forever under Service churn.
type idAllocator struct {
	max   uint32
	next  uint32 // lowest never-allocated ID
	freed idHeap // freed IDs, all < next
	inUse int
}

func newIDAllocator(max uint32) *idAllocator {
	return &idAllocator{max: max, next: 1}
}

// allocate returns the lowest free ID.
func (a *idAllocator) allocate() (uint32, error) {
	var id uint32
	switch {
	case len(a.freed) > 0:
		id = heap.Pop(&a.freed).(uint32)
	case a.next <= a.max:
		id = a.next
		a.next++
	default:
		return 0, fmt.Errorf("all %d service port IDs are in use", a.max)
	}
	a.inUse++
	return id, nil
}

// release frees an ID previously returned by allocate.
func (a *idAllocator) release(id uint32) {
	if id == 0 || id >= a.next {
		return // never allocated: nothing to free (defensive)
	}
	heap.Push(&a.freed, id)
	a.inUse--
}

type idHeap []uint32

func (h idHeap) Len() int           { return len(h) }
func (h idHeap) Less(i, j int) bool { return h[i] < h[j] }
func (h idHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *idHeap) Push(x any)        { *h = append(*h, x.(uint32)) }
func (h *idHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
