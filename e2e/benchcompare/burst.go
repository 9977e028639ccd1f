package main

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nftproxy/nftproxy/e2e/netkit"
)

// burstResult is a burst of endpoint changes to distinct Services, sent
// evenly within a second by concurrent writers (as a rolling update of
// many Deployments would produce them). They are written into etcd, as
// the load is: the apiserver here accepts ~100 slice updates a second,
// too few to send 1,000 within one; the proxies see them through the
// apiserver's watch like any update.
type burstResult struct {
	Changes int `json:"changes"`
	// SendSpanS: first write sent → last one stored.
	SendSpanS float64 `json:"sendSpanSeconds"`
	// AllInKernelS: first write sent → every change in the kernel.
	AllInKernelS float64 `json:"allInKernelSeconds"`
	// ChangeMs: each change's own latency, write sent → kernel.
	ChangeMs []float64 `json:"changeMs"`
}

const burstWriters = 64

// burst sends count changes (to distinct Services when n allows) spread
// over within, and waits until the kernel has all of them.
func (h *harness) burst(ctx context.Context, proc *netkit.Proc, p *proxy, n, count int, within time.Duration) (*burstResult, error) {
	addrs := make([]netip.Addr, count)
	for k := range addrs {
		addrs[k] = changedAddr(h.nextChange)
		h.nextChange++
	}
	sent := make([]time.Time, count)
	ready := make([]atomic.Bool, count)
	var lastAck atomic.Int64
	var next atomic.Int64
	errc := make(chan error, burstWriters)
	var wg sync.WaitGroup
	t0 := time.Now()
	for w := 0; w < burstWriters; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				k := int(next.Add(1) - 1)
				if k >= count || ctx.Err() != nil {
					return
				}
				time.Sleep(time.Until(t0.Add(within * time.Duration(k) / time.Duration(count))))
				at, err := h.loader.putChangedSlice(ctx, (k*7919+29)%n, addrs[k])
				if err != nil {
					errc <- err
					return
				}
				sent[k] = at
				ready[k].Store(true)
				now := time.Since(t0).Nanoseconds()
				for old := lastAck.Load(); now > old && !lastAck.CompareAndSwap(old, now); old = lastAck.Load() {
				}
			}
		}()
	}
	sendDone := make(chan struct{})
	go func() { wg.Wait(); close(sendDone) }()

	seen := make([]time.Time, count)
	remaining := count
	deadline := t0.Add(within + 5*time.Minute)
	for remaining > 0 {
		select {
		case err := <-errc:
			return nil, err
		default:
		}
		var idx []int
		var batch []netip.Addr
		for k := range addrs {
			if seen[k].IsZero() && ready[k].Load() {
				idx = append(idx, k)
				batch = append(batch, addrs[k])
			}
		}
		if len(batch) > 0 {
			in, err := p.endpointsIn(h.env, batch)
			if err != nil {
				return nil, err
			}
			now := time.Now()
			for i, ok := range in {
				if ok {
					seen[idx[i]] = now
					remaining--
				}
			}
		}
		if proc.Exited() {
			return nil, fmt.Errorf("proxy exited: %v", proc.Wait())
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%d of %d burst changes not in the kernel after %s", remaining, count, time.Since(t0).Round(time.Second))
		}
		if remaining > 0 {
			time.Sleep(p.pollEvery)
		}
	}
	<-sendDone
	r := &burstResult{Changes: count, SendSpanS: time.Duration(lastAck.Load()).Seconds()}
	var last time.Time
	for k := range seen {
		if seen[k].After(last) {
			last = seen[k]
		}
		r.ChangeMs = append(r.ChangeMs, ms(seen[k].Sub(sent[k])))
	}
	r.AllInKernelS = last.Sub(t0).Seconds()
	return r, nil
}
