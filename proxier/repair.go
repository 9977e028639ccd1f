package proxier

import (
	"context"
	"sync"
	"time"

	"k8s.io/klog/v2"

	"github.com/nftproxy/nftproxy/nftrules/nft"
)

// ForeignWatcher reports the transactions of other processes that change
// our tables; *nft.Reconciler implements it.
type ForeignWatcher interface {
	// WatchForeign returns once subscribed and calls notify from another
	// goroutine until ctx ends.
	WatchForeign(ctx context.Context, notify func(nft.ForeignChange)) error
}

// foreignChanges accumulates the foreign changes not yet repaired. It is
// filled by the watcher's goroutine and taken by syncs.
type foreignChanges struct {
	mu      sync.Mutex
	pending foreignSummary
}

// foreignSummary sums up foreign changes.
type foreignSummary struct {
	n     int
	first time.Time // when the first was seen
	last  nft.ForeignChange
}

func (f *foreignChanges) add(c nft.ForeignChange, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.pending.n == 0 {
		f.pending.first = now
	}
	f.pending.n++
	f.pending.last = c
}

func (f *foreignChanges) take() foreignSummary {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.pending
	f.pending = foreignSummary{}
	return s
}

// restore puts back what a failed sync took: the retry repairs it.
func (f *foreignChanges) restore(s foreignSummary) {
	if s.n == 0 {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.pending.n == 0 || s.first.Before(f.pending.first) {
		f.pending.first = s.first
	}
	if f.pending.n == 0 {
		f.pending.last = s.last
	}
	f.pending.n += s.n
}

// watchForeign starts the watcher, if any, and returns the channel that
// asks the runner for a repair (nil without a watcher).
func (p *Proxier) watchForeign(ctx context.Context) <-chan struct{} {
	if p.cfg.Watcher == nil {
		return nil
	}
	repair := make(chan struct{}, 1)
	err := p.cfg.Watcher.WatchForeign(ctx, func(c nft.ForeignChange) {
		klog.V(2).InfoS("Another process changed our nftables tables", "writer", c.Writer(), "generation", c.Gen, "objects", c.Objects)
		p.foreign.add(c, p.clock.Now())
		select {
		case repair <- struct{}{}:
		default: // a repair is already asked for
		}
	})
	if err != nil {
		klog.ErrorS(err, "Cannot watch nftables events: changes other processes make to our tables wait for the next full sync")
		return nil
	}
	return repair
}

// takeForeign returns the foreign changes a full sync is about to repair,
// logging them.
func (p *Proxier) takeForeign(full bool) foreignSummary {
	if !full {
		return foreignSummary{}
	}
	s := p.foreign.take()
	if s.n > 0 {
		klog.InfoS("Repairing our nftables tables, changed by another process", "writer", s.last.Writer(),
			"changes", s.n, "since", p.clock.Since(s.first))
	}
	return s
}
