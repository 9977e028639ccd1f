package main

import (
	"context"
	"fmt"
	"time"

	"github.com/nftproxy/nftproxy/e2e/netkit"
)

// connSample is one endpoint change of the connection target, timed three
// ways from the moment the slice update was sent: until the new endpoint
// is in the kernel, until the first real connection through the ClusterIP
// is answered by it, and as the proxy's own network-programming metric
// reports it (from the trigger-time annotation; -1 when it observed
// nothing).
type connSample struct {
	kernelMs, connMs, metricMs float64
}

// connChange switches the connection target to its other listener.
func (h *harness) connChange(ctx context.Context, proc *netkit.Proc, p *proxy) (connSample, error) {
	t := h.target
	next := 1 - t.current
	pod := t.listeners[next]
	before, scrapeErr := scrapeHistogram(h.env.node.NS, programmingMetric)

	type answer struct {
		at  time.Time
		err error
	}
	stop := make(chan struct{})
	answers := make(chan answer, 1)
	go func() {
		at, err := firstAnswerFrom(t.client.NS, t.service(), pod.Name, time.Now().Add(time.Minute), stop)
		answers <- answer{at, err}
	}()
	giveUp := func(err error) (connSample, error) {
		close(stop)
		<-answers
		return connSample{}, err
	}

	sent, err := h.loader.setEndpoints(ctx, connIndex, t.endpoint(next))
	if err != nil {
		return giveUp(err)
	}
	t.current = next
	if err := poll(ctx, proc, time.Minute, p.pollEvery, func() (bool, error) { return p.hasEndpoint(h.env, pod.IPv4) }); err != nil {
		return giveUp(fmt.Errorf("endpoint %s in the kernel: %w", pod.IPv4, err))
	}
	s := connSample{kernelMs: ms(time.Since(sent)), metricMs: -1}
	a := <-answers
	if a.err != nil {
		return connSample{}, fmt.Errorf("connection to %s reaching %s: %w", t.service(), pod.Name, a.err)
	}
	s.connMs = ms(a.at.Sub(sent))

	// The metric is observed at the end of the sync, which may finish
	// after the kernel has the rules (kube-proxy's nft child exits, then
	// it records).
	if scrapeErr == nil {
		for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
			after, err := scrapeHistogram(h.env.node.NS, programmingMetric)
			if err != nil {
				break
			}
			if v, ok := observedMs(before, after); ok {
				s.metricMs = v
				break
			}
		}
	}
	return s, nil
}
