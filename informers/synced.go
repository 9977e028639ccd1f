package informers

import (
	"context"
	"sync"
	"time"

	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
)

// What each informer watches, as SyncTime names it.
const (
	whatServices = "Services"
	whatSlices   = "EndpointSlices"
	whatNode     = "Node"
)

// SyncTime is one informer's part of the start-up timeline: at 10,000
// Services the initial lists are most of the time before the first sync,
// and whether they or our handling of them cost is read from these.
type SyncTime struct {
	// What is watched: Services, EndpointSlices or Node.
	What string
	// Objects counts the objects of the initial list.
	Objects int
	// Listed is when the whole initial list had arrived (a LIST answered
	// or a stream of initial events ended); Synced is when the informer's
	// cache held it and our handler had seen every object of it.
	Listed, Synced time.Time
}

// syncTimes collects SyncTimes from the informers' goroutines.
type syncTimes struct {
	mu    sync.Mutex
	times []SyncTime
}

// entry returns what's SyncTime, adding it; call with mu held.
func (s *syncTimes) entry(what string) *SyncTime {
	for i := range s.times {
		if s.times[i].What == what {
			return &s.times[i]
		}
	}
	s.times = append(s.times, SyncTime{What: what})
	return &s.times[len(s.times)-1]
}

// listed returns the resumer's callback for what's first complete list.
func (s *syncTimes) listed(what string) func(objects int) {
	s.mu.Lock()
	s.entry(what)
	s.mu.Unlock()
	return func(objects int) {
		now := time.Now()
		s.mu.Lock()
		e := s.entry(what)
		e.Objects, e.Listed = objects, now
		s.mu.Unlock()
		klog.V(2).InfoS("Initial list received", "what", what, "objects", objects)
	}
}

// waitSynced records when done completes and returns true, or false if
// ctx ends first.
func (s *syncTimes) waitSynced(ctx context.Context, what string, done cache.DoneChecker) bool {
	select {
	case <-done.Done():
	case <-ctx.Done():
		return false
	}
	now := time.Now()
	s.mu.Lock()
	s.entry(what).Synced = now
	s.mu.Unlock()
	klog.V(2).InfoS("Initial list handled", "what", what)
	return true
}

func (s *syncTimes) get() []SyncTime {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]SyncTime(nil), s.times...)
}
