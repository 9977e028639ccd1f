package proxier

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/nftproxy/nftproxy/nftrules/nft"
)

// The default pacing (no min sync period set): syncs paced by their
// measured cost. Sync costs are fake time spent inside fn.

func startAdaptive(t *testing.T, partial, full time.Duration) *runnerHarness {
	cost := func(f bool) time.Duration {
		if f {
			return full
		}
		return partial
	}
	return startRunnerWith(t, 0, cost, func(r *runner) { r.adaptive, r.fullInterval = true, time.Hour })
}

func TestAdaptiveRunnerSyncsALoneChangeAtOnce(t *testing.T) {
	h := startAdaptive(t, 5*time.Millisecond, 0)
	h.clk.Step(time.Minute)
	h.signal()
	h.wantCalls(call{full: true}, call{at: time.Minute})
}

// A cold sync of 10 s (50,000 Services) is not charged: the change after
// it is programmed at once.
func TestAdaptiveRunnerDoesNotChargeFullSyncs(t *testing.T) {
	h := startAdaptive(t, 5*time.Millisecond, 10*time.Second)
	h.signal()
	h.wantCalls(call{full: true}, call{at: 10 * time.Second})
}

// Ten changes a second whose syncs take 20 ms each (four times one
// endpoint change at 10k Services) are each programmed when they arrive,
// for as long as they come.
func TestAdaptiveRunnerKeepsUpWithTenChangesPerSecond(t *testing.T) {
	h := startAdaptive(t, 20*time.Millisecond, 0)
	for i := range 600 { // a minute
		h.clk.SetTime(h.t0.Add(time.Duration(i) * 100 * time.Millisecond))
		h.signal()
		if got := h.got(); len(got) != i+2 || got[i+1].at != time.Duration(i)*100*time.Millisecond {
			t.Fatalf("change %d at %v: syncs %+v", i, time.Duration(i)*100*time.Millisecond, got[max(0, len(got)-3):])
		}
	}
}

// Under a storm (a change arrives right after every sync) syncs take at
// most a fifth of the time, plus the savings of the quiet second before
// (and the last sync, admitted before it was charged), and still run:
// every change waits less than a second.
func TestAdaptiveRunnerBoundsSyncTimeUnderAStorm(t *testing.T) {
	const cost = 10 * time.Millisecond
	h := startAdaptive(t, cost, 0)
	for h.clk.Since(h.t0) < 10*time.Second {
		n := len(h.got())
		arrived := h.clk.Since(h.t0)
		h.signal()
		if len(h.got()) == n {
			h.stepToTimer()
		}
		got := h.got()
		if len(got) != n+1 {
			t.Fatalf("the change at %v was not synced by the next timer: %+v", arrived, got[n:])
		}
		if wait := got[n].at - arrived; wait > costMaxWait {
			t.Fatalf("the change at %v waited %v", arrived, wait)
		}
	}
	elapsed := h.clk.Since(h.t0)
	syncTime := time.Duration(len(h.got())-1) * cost
	if limit := (elapsed+costSavings)/costFactor + cost; syncTime > limit {
		t.Errorf("syncs took %v of %v, more than the %v allowed", syncTime, elapsed, limit)
	}
	if floor := elapsed / costFactor * 9 / 10; syncTime < floor {
		t.Errorf("syncs took %v of %v: throttled below the share (%v)", syncTime, elapsed, floor)
	}
}

// A partial sync that takes 3 s (far beyond the share) makes the next
// change wait a second after it, no more: never slower than kube-proxy's
// default min sync period.
func TestAdaptiveRunnerWaitsAtMostASecond(t *testing.T) {
	h := startAdaptive(t, 3*time.Second, 0)
	h.signal() // at 0, runs until 3 s
	h.signal()
	h.wantCalls(call{full: true}, call{})
	h.stepToTimer()
	h.wantCalls(call{full: true}, call{}, call{at: 4 * time.Second})
}

// The periodic check (verify) runs beside partial syncs: a change made
// while it reads the kernel is synced at once, and only a check that
// finds a difference (or fails) is followed by a full sync. A check that
// left part of the kernel unchecked runs again after uncheckedRetry, not
// one period later, and every outcome is reported (metrics).
func TestRunnerChecksTheKernelBesidePartialSyncs(t *testing.T) {
	results := make(chan nft.VerifyOutcome)
	started := make(chan struct{}, 10)
	var reported []nft.VerifyOutcome // read once the runner is idle
	h := startRunnerWith(t, 0, nil, func(r *runner) {
		r.adaptive, r.fullInterval = true, 30*time.Second
		r.verify = func(ctx context.Context) (nft.VerifyResult, error) {
			started <- struct{}{}
			select {
			case o := <-results:
				return nft.VerifyResult{Outcome: o, Step: "tables"}, nil
			case <-ctx.Done():
				return nft.VerifyResult{}, ctx.Err()
			}
		}
		r.checked = func(res nft.VerifyResult, _ error) { reported = append(reported, res.Outcome) }
	})
	h.stepFiring(30 * time.Second)
	<-started // the check is reading the kernel...
	h.signal()
	h.wantCalls(call{full: true}, call{at: 30 * time.Second}) // ...and the change is synced meanwhile
	h.act(func() { results <- nft.VerifySame })
	h.wantCalls(call{full: true}, call{at: 30 * time.Second}) // the kernel matched: no full sync

	h.stepFiring(30 * time.Second)
	<-started
	h.act(func() { results <- nft.VerifyUnchecked })
	if next := time.Unix(0, h.wakeAt.Load()).Sub(h.clk.Now()); next != uncheckedRetry {
		t.Fatalf("after an unchecked step the next check is in %v, want %v", next, uncheckedRetry)
	}
	h.stepToTimer()
	<-started // checked again, with no full sync in between
	h.act(func() { results <- nft.VerifyDiffers })
	h.wantCalls(call{full: true}, call{at: 30 * time.Second}, call{full: true, at: time.Minute + uncheckedRetry})
	if want := []nft.VerifyOutcome{nft.VerifySame, nft.VerifyUnchecked, nft.VerifyDiffers}; !slices.Equal(reported, want) {
		t.Errorf("reported outcomes %v, want %v", reported, want)
	}
}
