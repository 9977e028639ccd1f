// Package informers watches Services, EndpointSlices and this node's Node
// and records which of them changed. Event handlers do no other work: the
// proxier reads the recorded keys and the informer caches when it syncs.
package informers

import (
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
)

// Tracker accumulates changes between two syncs and wakes the consumer.
// It is safe for concurrent use.
type Tracker struct {
	clock clock.PassiveClock
	wake  chan struct{}

	mu        sync.Mutex
	services  map[types.NamespacedName]struct{}
	endpoints map[types.NamespacedName]struct{}
	node      bool
	oldest    time.Time
}

// Changes is what happened since the previous Take.
type Changes struct {
	// Services are Services whose object changed (added, updated, deleted).
	Services map[types.NamespacedName]struct{}
	// Endpoints are Services one of whose EndpointSlices changed.
	Endpoints map[types.NamespacedName]struct{}
	// Node is true when this node's Node object changed.
	Node bool
	// Oldest is when the first of these changes was seen (zero if none):
	// the start of network programming latency.
	Oldest time.Time
}

// Empty reports whether nothing changed.
func (c Changes) Empty() bool {
	return len(c.Services) == 0 && len(c.Endpoints) == 0 && !c.Node
}

// NewTracker returns an empty tracker; clk timestamps changes.
func NewTracker(clk clock.PassiveClock) *Tracker {
	t := &Tracker{clock: clk, wake: make(chan struct{}, 1)}
	t.reset()
	return t
}

func (t *Tracker) reset() {
	t.services = map[types.NamespacedName]struct{}{}
	t.endpoints = map[types.NamespacedName]struct{}{}
	t.node = false
	t.oldest = time.Time{}
}

// ServiceChanged records a change of a Service object.
func (t *Tracker) ServiceChanged(key types.NamespacedName) {
	t.record(func() { t.services[key] = struct{}{} })
}

// EndpointsChanged records a change of an EndpointSlice of a Service.
func (t *Tracker) EndpointsChanged(key types.NamespacedName) {
	t.record(func() { t.endpoints[key] = struct{}{} })
}

// NodeChanged records a change of this node's Node object.
func (t *Tracker) NodeChanged() {
	t.record(func() { t.node = true })
}

func (t *Tracker) record(f func()) {
	t.mu.Lock()
	if t.oldest.IsZero() {
		t.oldest = t.clock.Now()
	}
	f()
	t.mu.Unlock()
	// Never block an informer: one pending signal is enough, the consumer
	// takes every recorded change at once.
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// Wake is signalled (coalesced) after changes are recorded.
func (t *Tracker) Wake() <-chan struct{} { return t.wake }

// Take returns the changes recorded so far and starts afresh.
func (t *Tracker) Take() Changes {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := Changes{Services: t.services, Endpoints: t.endpoints, Node: t.node, Oldest: t.oldest}
	t.reset()
	return c
}

// Pending returns how many Services have pending Service and endpoint
// changes (for metrics, and for tests to know events have arrived).
func (t *Tracker) Pending() (services, endpoints int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.services), len(t.endpoints)
}
