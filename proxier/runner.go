package proxier

import (
	"context"
	"time"

	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
)

// initialRetryDelay is the first delay after a failed sync; it doubles on
// each further failure, up to the sync period.
const initialRetryDelay = time.Second

// runner calls fn when woken, but never more often than minInterval
// (measured between starts), and with full=true at least every
// fullInterval. Signals that arrive while waiting or running coalesce into
// one call. A failing fn is retried with exponential backoff capped at
// fullInterval; until it succeeds every retry is a full one.
type runner struct {
	clock        clock.Clock
	minInterval  time.Duration
	fullInterval time.Duration
	wake         <-chan struct{}
	fn           func(ctx context.Context, full bool) error
	// idle, if set, is called when the runner is about to block with its
	// timer armed: tests use it to know when the fake clock may be moved.
	idle func()
}

func (r *runner) run(ctx context.Context) {
	pending, full := true, true // the first run is a full one
	nextFull := r.clock.Now().Add(r.fullInterval)
	var notBefore time.Time // earliest start of the next run
	var backoff time.Duration

	for {
		now := r.clock.Now()
		if !now.Before(nextFull) {
			pending, full = true, true
		}
		if pending && !now.Before(notBefore) {
			err := r.fn(ctx, full)
			if ctx.Err() != nil {
				return
			}
			end := r.clock.Now()
			notBefore = now.Add(r.minInterval)
			if err != nil {
				backoff = min(max(2*backoff, initialRetryDelay), r.fullInterval)
				klog.ErrorS(err, "Sync failed, will retry", "after", backoff)
				if retry := end.Add(backoff); retry.After(notBefore) {
					notBefore = retry
				}
				full = true
				continue
			}
			backoff = 0
			if full {
				nextFull = end.Add(r.fullInterval)
			}
			pending, full = false, false
			continue
		}

		wakeAt := nextFull
		if pending && notBefore.Before(wakeAt) {
			wakeAt = notBefore
		}
		t := r.clock.NewTimer(wakeAt.Sub(now))
		if r.idle != nil {
			r.idle()
		}
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-r.wake:
			pending = true
		case <-t.C():
		}
		t.Stop()
	}
}
