package proxier

import (
	"context"
	"time"

	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/nftproxy/nftproxy/nftrules/nft"
)

// initialRetryDelay is the first delay after a failed sync; it doubles on
// each further failure, up to the sync period.
const initialRetryDelay = time.Second

// Repairs (see Config.Watcher): the first repair after a quiet spell runs
// at once; each repair that follows the previous one closely (within twice
// the current gap) doubles the gap, up to the sync period, so that two
// writers fighting over our tables cost a few syncs, not a storm.
const repairMinGap = 250 * time.Millisecond

// uncheckedRetry is how soon a check that left a step unchecked
// (nft.VerifyUnchecked: our own syncs changed more objects during its read
// than it re-reads under the lock) runs again, instead of one period later:
// churn that large is short, and drift must not wait for it to end.
const uncheckedRetry = 2 * time.Second

// runner calls fn when woken, as often as its limiter admits (pacing.go),
// and every fullInterval checks the kernel (verify) or, without verify,
// calls fn with full=true. Signals that arrive while waiting or running
// coalesce into one call. A failing fn is retried with exponential backoff
// capped at fullInterval; until it succeeds every retry is a full one.
//
// A signal on repair (another process changed our tables) asks for a full
// sync outside the limiter and the retry backoff, paced by a
// repairLimiter instead; while it waits for its slot every other sync
// waits with it (a partial sync would build on what the other writer has
// changed).
type runner struct {
	clock clock.Clock
	// minInterval, if adaptive is false, is the min sync period: at most
	// syncBurst starts within it (0: no limit). adaptive paces partial
	// syncs by their cost instead (costLimiter), the default.
	minInterval  time.Duration
	adaptive     bool
	fullInterval time.Duration
	wake         <-chan struct{}
	repair       <-chan struct{}
	fn           func(ctx context.Context, full bool) error
	// verify, if set, replaces the periodic full sync: it checks the
	// kernel beside the partial syncs instead of holding them back
	// (nft.Reconciler.Verify); a difference is repaired by a full sync,
	// and a check that left a step unchecked runs again after
	// uncheckedRetry. At 50,000 Services a full sync takes seconds, and
	// every change made meanwhile waited for it.
	verify func(ctx context.Context) (nft.VerifyResult, error)
	// checked, if set, is told the outcome of every check (metrics).
	checked func(nft.VerifyResult, error)
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
	var lim syncLimiter = newTokenBucket(r.minInterval, r.clock.Now())
	if r.adaptive {
		lim = newCostLimiter(r.clock.Now())
	}
	rl := repairLimiter{minGap: repairMinGap, maxGap: max(r.fullInterval, repairMinGap)}
	verified := make(chan verifyResult, 1)
	verifying := false
	defer func() {
		if verifying {
			<-verified // it stops at ctx's end
		}
	}()

	for {
		now := r.clock.Now()
		if !now.Before(nextFull) {
			if r.verify == nil || full {
				pending, full = true, true
			} else {
				if !verifying {
					verifying = true
					go func() {
						began := r.clock.Now()
						res, err := r.verify(ctx)
						verified <- verifyResult{res, err, r.clock.Since(began)}
					}()
				}
				nextFull = now.Add(r.fullInterval)
			}
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
			} else if wait := lim.admit(now); wait > 0 {
				notBefore = now.Add(wait)
				continue
			}
			err := r.fn(ctx, full)
			if ctx.Err() != nil {
				return
			}
			end := r.clock.Now()
			if !repair {
				lim.ran(now, end, full)
			}
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
		case v := <-verified:
			verifying = false
			if ctx.Err() != nil {
				break
			}
			if r.checked != nil {
				r.checked(v.res, v.err)
			}
			if retry := r.checkDone(v); retry {
				pending, full = true, true
			} else if v.res.Outcome == nft.VerifyUnchecked {
				nextFull = earlier(nextFull, r.clock.Now().Add(min(uncheckedRetry, r.fullInterval)))
			}
		case <-t.C():
		}
		t.Stop()
	}
}

type verifyResult struct {
	res  nft.VerifyResult
	err  error
	took time.Duration // logged: at 50,000 Services a check takes seconds
}

// checkDone logs a check's outcome and reports whether a full sync must
// repair (or, after an error, re-read) the kernel.
func (r *runner) checkDone(v verifyResult) (fullSync bool) {
	if v.err != nil {
		klog.ErrorS(v.err, "Checking the rules in the kernel failed; running a full sync", "step", v.res.Step)
		return true
	}
	klog.V(2).InfoS("Checked the rules in the kernel", "result", v.res.Outcome, "step", v.res.Step,
		"confirmedUnderLock", v.res.Confirmed, "longestLockHold", v.res.Held, "duration", v.took)
	switch v.res.Outcome {
	case nft.VerifyDiffers:
		klog.InfoS("The rules in the kernel differ from those applied; running a full sync", "step", v.res.Step)
		return true
	case nft.VerifyUnchecked:
		klog.InfoS("Part of the rules in the kernel could not be checked: our own syncs changed too much of it meanwhile; checking again soon",
			"step", v.res.Step, "after", min(uncheckedRetry, r.fullInterval))
	}
	return false
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
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
