package main

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/nftproxy/nftproxy/e2e/netkit"
)

// dataPlane is what a client in a pod sees of the proxy's rules: new TCP
// connections to a ClusterIP whose one endpoint is a pod on the same node.
// Only a connection's first packet traverses the proxy's NAT rules (the
// rest follow conntrack), so the connect time is the first-packet latency.
type dataPlane struct {
	// ConnectMs: each connect to the ClusterIP, one after the other.
	ConnectMs []float64 `json:"connectMs"`
	// DirectMs: the same to the endpoint's own address (still through
	// the node's prerouting hooks, not through a Service rule).
	DirectMs []float64 `json:"directConnectMs"`
	Failed   int       `json:"failedConnects,omitempty"`
	// PerSecond: new connections per second one client opens through
	// the ClusterIP, connecting one after the other.
	PerSecond float64 `json:"connectionsPerSecond"`
	// RateAttempts: the windows PerSecond took (see rateProxyCPUMax);
	// ProxyCPUInRateS: the proxy's CPU seconds in the window kept.
	RateAttempts    int     `json:"rateAttempts,omitempty"`
	ProxyCPUInRateS float64 `json:"proxyCPUInRateWindowSeconds"`
}

// Data-plane sample sizes: connections timed per run, and how long the
// connection rate is measured.
const (
	dpConnects = 2000
	dpRateSpan = 2 * time.Second
)

// The connection rate is the cost of the rules to a client; on two cores
// a proxy's own periodic work (nftproxy's check of the kernel, 1-2 s of
// CPU at 30k Services, on a timer that a 60 s wait for idle can land on
// exactly) takes the client's core for part of the window. A window in
// which the proxy used more than rateProxyCPUMax is measured again once
// the proxy is quiet, at most rateAttempts times; the JSON keeps the
// attempts and the proxy's CPU in the window kept.
const (
	rateProxyCPUMax = 0.1 // seconds
	rateAttempts    = 3
	rateQuietMax    = 40 * time.Second
)

func (h *harness) measureDataPlane(ctx context.Context, proc *netkit.Proc, p *proxy) (*dataPlane, error) {
	t := h.target
	err := poll(ctx, proc, time.Minute, p.pollEvery, func() (bool, error) {
		if ok, err := p.programmed(h.env, t.clusterIP); !ok || err != nil {
			return false, err
		}
		return p.hasEndpoint(h.env, t.listeners[t.current].IPv4)
	})
	if err != nil {
		return nil, fmt.Errorf("connection target in the kernel: %w", err)
	}
	ns := t.client.NS
	// Warm the neighbour entries and the code paths first.
	if _, failed, err := connectSamples(ns, t.service(), 20); err != nil || failed == 20 {
		return nil, fmt.Errorf("no connection through %s from %s (%d failed): %v", t.service(), t.client.Name, failed, err)
	}
	dp := &dataPlane{}
	var failed int
	if dp.ConnectMs, failed, err = connectSamples(ns, t.service(), dpConnects); err != nil {
		return nil, err
	}
	dp.Failed += failed
	if dp.DirectMs, failed, err = connectSamples(ns, t.direct(), dpConnects); err != nil {
		return nil, err
	}
	dp.Failed += failed
	for attempt := 1; ; attempt++ {
		before := procCPU(proc.PID)
		if dp.PerSecond, failed, err = connectRate(ns, t.service(), dpRateSpan); err != nil {
			return nil, err
		}
		used := procCPU(proc.PID) - before
		dp.Failed += failed
		dp.RateAttempts, dp.ProxyCPUInRateS = attempt, math.Round(used*1000)/1000
		if used <= rateProxyCPUMax || attempt == rateAttempts || ctx.Err() != nil {
			break
		}
		h.log("  %s: used %.2f s of CPU during the %v connection-rate window (%.0f connections/s); measuring again once it is quiet",
			p.name, used, dpRateSpan, dp.PerSecond)
		w := h.waitFor(ctx, proc, newQuietGate(rateQuietMax))
		h.log("  %s: quiet: %t after %.1f s (machine %.0f %% busy over the last 2 s)", p.name, w.Idle, w.WaitedS, 100*w.MachineBusy)
	}
	roundAll(dp.ConnectMs)
	roundAll(dp.DirectMs)
	return dp, nil
}

// roundAll keeps microseconds: the JSON stays short and nothing measured
// here is finer.
func roundAll(v []float64) {
	for i := range v {
		v[i] = math.Round(v[i]*1000) / 1000
	}
}
