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
	// Running totals and the latest change, for metrics.
	stats Stats
}

// Stats are running totals of recorded changes, for metrics.
type Stats struct {
	// ServiceChanges and EndpointChanges count every recorded change of a
	// Service object and of an EndpointSlice (per Service it belongs to).
	ServiceChanges, EndpointChanges uint64
	// NodeChanges counts recorded changes of this node's Node.
	NodeChanges uint64
	// LastChange is when the latest change was recorded (zero if none).
	LastChange time.Time
	// Oldest is when the oldest change not yet taken was recorded (zero if
	// none is pending).
	Oldest time.Time
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
	t.record(func() {
		t.services[key] = struct{}{}
		t.stats.ServiceChanges++
	})
}

// EndpointsChanged records a change of an EndpointSlice of a Service.
func (t *Tracker) EndpointsChanged(key types.NamespacedName) {
	t.record(func() {
		t.endpoints[key] = struct{}{}
		t.stats.EndpointChanges++
	})
}

// NodeChanged records a change of this node's Node object.
func (t *Tracker) NodeChanged() {
	t.record(func() {
		t.node = true
		t.stats.NodeChanges++
	})
}

func (t *Tracker) record(f func()) {
	t.mu.Lock()
	now := t.clock.Now()
	if t.oldest.IsZero() {
		t.oldest = now
	}
	t.stats.LastChange = now
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

// Stats returns the running totals of recorded changes.
func (t *Tracker) Stats() Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.stats
	s.Oldest = t.oldest
	return s
}
