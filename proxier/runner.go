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

// Repairs (see Config.Watcher): the first repair after a quiet spell runs
// at once; each repair that follows the previous one closely (within twice
// the current gap) doubles the gap, up to the sync period, so that two
// writers fighting over our tables cost a few syncs, not a storm.
const repairMinGap = 250 * time.Millisecond

// runner calls fn when woken, but never more than syncBurst times within
// minInterval (measured between starts), and with full=true at least every
// fullInterval. Signals that arrive while waiting or running coalesce into
// one call. A failing fn is retried with exponential backoff capped at
// fullInterval; until it succeeds every retry is a full one.
//
// A signal on repair (another process changed our tables) asks for a full
// sync outside the token bucket and the retry backoff, paced by a
// repairLimiter instead; while it waits for its slot every other sync
// waits with it (a partial sync would build on what the other writer has
// changed).
type runner struct {
	clock        clock.Clock
	minInterval  time.Duration
	fullInterval time.Duration
	wake         <-chan struct{}
	repair       <-chan struct{}
	fn           func(ctx context.Context, full bool) error
	// idle, if set, is called when the runner is about to block with its
	// timer armed for wakeAt: tests use it to know when the fake clock may
	// be moved.
	idle func(wakeAt time.Time)
}

func (r *runner) run(ctx context.Context) {
	pending, full := true, true // the first run is a full one
	repair := false             // a repair waits for its slot
	nextFull := r.clock.Now().Add(r.fullInterval)
	var notBefore time.Time // earliest start of the next normal run
	var retryAt time.Time   // after a failure, earliest start of any run
	var backoff time.Duration
	tb := tokenBucket{tokens: syncBurst, last: r.clock.Now()}
	rl := repairLimiter{minGap: repairMinGap, maxGap: max(r.fullInterval, repairMinGap)}

	for {
		now := r.clock.Now()
		if !now.Before(nextFull) {
			pending, full = true, true
		}
		start := later(notBefore, retryAt)
		if repair {
			// Not after the retry backoff either: the failure may
			// well have been the other writer's doing.
			start = rl.next()
		}
		if (pending || repair) && !now.Before(start) {
			if repair {
				rl.started(now)
				full = true
			} else if wait := tb.take(now, r.minInterval); wait > 0 {
				notBefore = now.Add(wait)
				continue
			}
			err := r.fn(ctx, full)
			if ctx.Err() != nil {
				return
			}
			end := r.clock.Now()
			notBefore, repair = time.Time{}, false
			if err != nil {
				backoff = min(max(2*backoff, initialRetryDelay), r.fullInterval)
				klog.ErrorS(err, "Sync failed, will retry", "after", backoff)
				retryAt = end.Add(backoff)
				pending, full = true, true
				continue
			}
			backoff, retryAt = 0, time.Time{}
			if full {
				nextFull = end.Add(r.fullInterval)
			}
			pending, full = false, false
			continue
		}

		wakeAt := nextFull
		if (pending || repair) && start.Before(wakeAt) {
			wakeAt = start
		}
		t := r.clock.NewTimer(wakeAt.Sub(now))
		if r.idle != nil {
			r.idle(wakeAt)
		}
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-r.wake:
			pending = true
		case <-r.repair:
			repair = true
		case <-t.C():
		}
		t.Stop()
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// repairLimiter paces repairs: the first after a quiet spell at once, then
// at least gap apart, the gap doubling (up to maxGap) while repairs keep
// coming within twice the gap of each other, and back to minGap after a
// spell of twice the gap without one.
type repairLimiter struct {
	minGap, maxGap time.Duration
	gap            time.Duration // 0 before the first repair
	last           time.Time
}

// next is the earliest start of the next repair.
func (l *repairLimiter) next() time.Time {
	if l.gap == 0 {
		return time.Time{}
	}
	return l.last.Add(l.gap)
}

// started records a repair starting at now.
func (l *repairLimiter) started(now time.Time) {
	if l.gap != 0 && now.Sub(l.last) < 2*l.gap {
		l.gap = min(2*l.gap, l.maxGap)
	} else {
		l.gap = l.minGap
	}
	l.last = now
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
