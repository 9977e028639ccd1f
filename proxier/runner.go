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

// syncBurst is how many syncs may start within one minInterval, as
// upstream's BoundedFrequencyRunner allows (burstSyncs = 2): a change that
// follows another at once is programmed at once, a storm of changes is
// still rate limited.
const syncBurst = 2

// runner calls fn when woken, but never more than syncBurst times within
// minInterval (measured between starts), and with full=true at least every
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
	tb := tokenBucket{tokens: syncBurst, last: r.clock.Now()}

	for {
		now := r.clock.Now()
		if !now.Before(nextFull) {
			pending, full = true, true
		}
		if pending && !now.Before(notBefore) {
			if wait := tb.take(now, r.minInterval); wait > 0 {
				notBefore = now.Add(wait)
				continue
			}
			err := r.fn(ctx, full)
			if ctx.Err() != nil {
				return
			}
			end := r.clock.Now()
			notBefore = time.Time{}
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

// tokenBucket allows syncBurst starts at once and one more per
// minInterval, like upstream's BoundedFrequencyRunner.
type tokenBucket struct {
	tokens float64
	last   time.Time
}

// take uses a token if one is there (returning 0), or returns how long to
// wait for the next one.
func (b *tokenBucket) take(now time.Time, interval time.Duration) time.Duration {
	if interval <= 0 {
		return 0
	}
	b.tokens = min(syncBurst, b.tokens+float64(now.Sub(b.last))/float64(interval))
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return 0
	}
	return time.Duration((1 - b.tokens) * float64(interval))
}
