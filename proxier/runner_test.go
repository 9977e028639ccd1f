package proxier

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

type call struct {
	full bool
	at   time.Duration // since the harness started
}

// runnerHarness drives a runner with a fake clock. Assertions are on call
// counts and fake times only, never on real elapsed time.
type runnerHarness struct {
	t    *testing.T
	clk  *clocktesting.FakeClock
	t0   time.Time
	wake chan struct{}
	// repair signals a foreign change of our tables.
	repair chan struct{}
	idle   atomic.Int64
	wakeAt atomic.Int64 // the runner's timer, in Unix nanoseconds
	fails  atomic.Int32 // fail this many next calls

	mu    sync.Mutex
	calls []call
}

// startRunner starts a runner with a fixed min interval (an explicit min
// sync period) whose first `fails` calls fail.
func startRunner(t *testing.T, minInterval, fullInterval time.Duration, fails int32) *runnerHarness {
	return startRunnerWith(t, fails, nil, func(r *runner) { r.minInterval, r.fullInterval = minInterval, fullInterval })
}

// startRunnerWith starts a runner configured by configure, whose syncs
// take cost(full) of fake time (nil: none).
func startRunnerWith(t *testing.T, fails int32, cost func(full bool) time.Duration, configure func(*runner)) *runnerHarness {
	t0 := time.Unix(10000, 0)
	h := &runnerHarness{t: t, clk: clocktesting.NewFakeClock(t0), t0: t0, wake: make(chan struct{}), repair: make(chan struct{})}
	h.fails.Store(fails)
	r := &runner{
		clock:  h.clk,
		wake:   h.wake,
		repair: h.repair,
		idle: func(at time.Time) {
			h.wakeAt.Store(at.UnixNano())
			h.idle.Add(1)
		},
		fn: func(_ context.Context, full bool) error {
			h.mu.Lock()
			h.calls = append(h.calls, call{full: full, at: h.clk.Since(h.t0)})
			h.mu.Unlock()
			if cost != nil {
				h.clk.Step(cost(full)) // no timer is armed while fn runs
			}
			if h.fails.Load() > 0 {
				h.fails.Add(-1)
				return errors.New("injected failure")
			}
			return nil
		},
	}
	configure(r)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	h.waitIdle(0) // the initial sync has run
	return h
}

// waitIdle waits until the runner has blocked more than n times.
func (h *runnerHarness) waitIdle(n int64) {
	h.t.Helper()
	deadline := time.Now().Add(30 * time.Second) // a hang guard, not a speed check
	for h.idle.Load() <= n {
		if time.Now().After(deadline) {
			h.t.Fatal("runner never became idle")
		}
		time.Sleep(time.Millisecond)
	}
}

// act does something the runner reacts to and waits until it is idle again.
func (h *runnerHarness) act(f func()) {
	h.t.Helper()
	n := h.idle.Load()
	f()
	h.waitIdle(n)
}

func (h *runnerHarness) signal()        { h.act(func() { h.wake <- struct{}{} }) }
func (h *runnerHarness) foreignChange() { h.act(func() { h.repair <- struct{}{} }) }

// stepToTimer moves the clock to the runner's timer, which fires.
func (h *runnerHarness) stepToTimer() {
	h.stepFiring(time.Unix(0, h.wakeAt.Load()).Sub(h.clk.Now()))
}
func (h *runnerHarness) stepFiring(d time.Duration) { h.act(func() { h.clk.Step(d) }) }

func (h *runnerHarness) got() []call {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]call(nil), h.calls...)
}

func (h *runnerHarness) wantCalls(want ...call) {
	h.t.Helper()
	got := h.got()
	if len(got) != len(want) {
		h.t.Fatalf("calls = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			h.t.Fatalf("call %d = %+v, want %+v (all: %+v)", i, got[i], want[i], got)
		}
	}
}

func TestRunnerInitialFullThenPartial(t *testing.T) {
	h := startRunner(t, 0, time.Hour, 0)
	h.wantCalls(call{full: true})
	h.signal()
	h.signal()
	h.wantCalls(call{full: true}, call{}, call{})
}

func TestRunnerCoalescesBurstsWithinMinInterval(t *testing.T) {
	h := startRunner(t, 10*time.Second, time.Hour, 0)
	for range 5 {
		h.signal()
	}
	// The burst allowance runs one more at once; the rest wait for the
	// min interval...
	h.wantCalls(call{full: true}, call{})
	h.stepFiring(10 * time.Second)
	h.wantCalls(call{full: true}, call{}, call{at: 10 * time.Second}) // ...and run once
	h.signal()                                                        // two starts in the last 10 s: waits until 20 s
	h.clk.Step(9 * time.Second)
	h.signal()
	h.wantCalls(call{full: true}, call{}, call{at: 10 * time.Second})
	h.stepFiring(time.Second)
	h.wantCalls(call{full: true}, call{}, call{at: 10 * time.Second}, call{at: 20 * time.Second})
}

func TestRunnerPeriodicFullSync(t *testing.T) {
	h := startRunner(t, time.Second, 30*time.Second, 0)
	h.stepFiring(30 * time.Second)
	h.wantCalls(call{full: true}, call{full: true, at: 30 * time.Second})
	h.signal() // right after a sync: the burst allowance runs it at once
	h.signal() // a third start within a second waits for the min interval
	h.stepFiring(time.Second)
	h.stepFiring(29 * time.Second)
	h.wantCalls(call{full: true}, call{full: true, at: 30 * time.Second},
		call{at: 30 * time.Second}, call{at: 31 * time.Second}, call{full: true, at: 60 * time.Second})
}

func TestRunnerRetriesFailuresWithCappedBackoff(t *testing.T) {
	h := startRunner(t, 0, 5*time.Second, 4)
	h.stepFiring(time.Second) // retry 1 after 1s
	h.clk.Step(time.Second)
	h.stepFiring(time.Second) // retry 2 after 2s
	h.stepFiring(4 * time.Second)
	h.stepFiring(5 * time.Second) // 8s capped at the 5s sync period; succeeds
	h.signal()                    // back to normal partial syncs
	h.wantCalls(
		call{full: true}, call{full: true, at: time.Second}, call{full: true, at: 3 * time.Second},
		call{full: true, at: 7 * time.Second}, call{full: true, at: 12 * time.Second},
		call{at: 12 * time.Second},
	)
}

func TestRunnerRepairsAtOnceOutsideTheTokenBucket(t *testing.T) {
	h := startRunner(t, 10*time.Second, time.Hour, 0)
	h.signal() // the burst allowance is used up
	h.foreignChange()
	h.wantCalls(call{full: true}, call{}, call{full: true})
}

func TestRunnerRepairsDuringTheRetryBackoff(t *testing.T) {
	h := startRunner(t, 0, time.Hour, 2) // the initial sync fails...
	h.foreignChange()                    // ...maybe because of another writer: repaired at once, fails too
	h.stepToTimer()                      // then the retry backoff (2 s after the second failure)
	h.wantCalls(call{full: true}, call{full: true}, call{full: true, at: 2 * time.Second})
}

func TestRunnerBacksOffWhenRepairsKeepComing(t *testing.T) {
	h := startRunner(t, 0, 4*time.Second, 0)
	// Another writer deletes our tables again right after every repair:
	// repairs at 0, then 250 ms, 500 ms, 1 s, 2 s, 4 s (capped at the
	// sync period) apart.
	h.foreignChange()
	for h.clk.Since(h.t0) < 10*time.Second {
		h.foreignChange()
		h.stepToTimer()
	}
	var at []time.Duration
	for _, c := range h.got()[1:] {
		if !c.full {
			t.Fatalf("a repair was not a full sync: %+v", h.got())
		}
		at = append(at, c.at)
	}
	want := []time.Duration{0, 250 * time.Millisecond, 750 * time.Millisecond, 1750 * time.Millisecond,
		3750 * time.Millisecond, 7750 * time.Millisecond, 11750 * time.Millisecond}
	if !slices.Equal(at, want) {
		t.Fatalf("repairs at %v, want %v", at, want)
	}
	// Once the fight stops, after twice the gap (8 s) without a repair a
	// change is repaired at once again. A periodic full sync (15.75 s) is
	// not a repair.
	h.stepToTimer()
	h.clk.Step(4 * time.Second)
	h.foreignChange()
	if got := h.got(); got[len(got)-1] != (call{full: true, at: 19750 * time.Millisecond}) {
		t.Fatalf("after a quiet spell: %+v", got)
	}
}

func TestRunnerHoldsSyncsWhileARepairWaits(t *testing.T) {
	h := startRunner(t, 0, time.Hour, 0)
	h.foreignChange() // at 0
	h.foreignChange() // waits for 250 ms
	h.signal()        // waits with it
	h.clk.Step(100 * time.Millisecond)
	h.wantCalls(call{full: true}, call{full: true}) // nothing yet
	h.stepToTimer()
	h.wantCalls(call{full: true}, call{full: true}, call{full: true, at: 250 * time.Millisecond})
	h.signal() // then partial syncs as usual
	h.wantCalls(call{full: true}, call{full: true}, call{full: true, at: 250 * time.Millisecond}, call{at: 250 * time.Millisecond})
}
