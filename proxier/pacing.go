package proxier

import "time"

// syncLimiter paces the syncs a runner starts for changes and periodic
// full syncs (repairs and retries have their own pacing).
type syncLimiter interface {
	// admit returns 0 and counts a sync starting at now if it may start,
	// or how long it must still wait.
	admit(now time.Time) time.Duration
	// ran records the cost of an admitted sync.
	ran(start, end time.Time, full bool)
}

// syncBurst is how many syncs may start within one min sync period, as
// upstream's BoundedFrequencyRunner allows (burstSyncs = 2): a change that
// follows another at once is programmed at once, a storm of changes is
// still rate limited.
const syncBurst = 2

// tokenBucket paces syncs by an explicit min sync period: syncBurst starts
// at once and one more per interval, exactly like upstream's
// BoundedFrequencyRunner. interval 0 admits every sync.
type tokenBucket struct {
	interval time.Duration
	tokens   float64
	last     time.Time
}

func newTokenBucket(interval time.Duration, now time.Time) *tokenBucket {
	return &tokenBucket{interval: interval, tokens: syncBurst, last: now}
}

func (b *tokenBucket) admit(now time.Time) time.Duration {
	if b.interval <= 0 {
		return 0
	}
	b.tokens = min(syncBurst, b.tokens+float64(now.Sub(b.last))/float64(b.interval))
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return 0
	}
	return time.Duration((1 - b.tokens) * float64(b.interval))
}

func (b *tokenBucket) ran(time.Time, time.Time, bool) {}

// The default pacing, when the user sets no min sync period: a partial
// sync costs a few milliseconds (one endpoint change at 10k Services:
// ~5 ms, docs/performance.md), so a fixed one-second period would hold
// changes back for nothing. Instead partial syncs may take up to a
// costFactor-th of the time, measured: a sync that took d is paid for with
// costFactor·d of wall time, from a balance that grows with the clock up to
// costSavings and may fall to -costMaxWait; a sync starts whenever the
// balance is not negative. So a lone change is programmed at once, and so
// is a stream of changes as long as their syncs stay within the share (10
// changes/s at up to 20 ms each); a storm gets syncs at most a fifth of
// the time, each taking every change that arrived while it waited. No
// change waits longer than costMaxWait, kube-proxy's default min sync
// period: the default is never slower than kube-proxy's, and spends no
// more time syncing than its one sync per second would at the same cost.
const (
	costFactor  = 5
	costSavings = time.Second // after a quiet second, 200 ms of syncs back to back
	costMaxWait = time.Second
)

// costLimiter is the default pacing (see costFactor). Full syncs are not
// charged: the sync period paces them.
type costLimiter struct {
	balance time.Duration // wall time in [-costMaxWait, costSavings]
	last    time.Time
}

func newCostLimiter(now time.Time) *costLimiter {
	return &costLimiter{balance: costSavings, last: now}
}

func (l *costLimiter) earn(now time.Time) {
	if now.After(l.last) {
		l.balance = min(costSavings, l.balance+now.Sub(l.last))
		l.last = now
	}
}

func (l *costLimiter) admit(now time.Time) time.Duration {
	l.earn(now)
	return max(0, -l.balance)
}

func (l *costLimiter) ran(start, end time.Time, full bool) {
	l.earn(end)
	if !full {
		l.balance = max(l.balance-costFactor*end.Sub(start), -costMaxWait)
	}
}
