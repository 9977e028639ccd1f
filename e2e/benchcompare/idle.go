package main

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/nftproxy/nftproxy/e2e/netkit"
)

// idleGate decides when a proxy is idle enough for a timed window to
// start: its CPU time (with its children's) has stopped growing for
// quiet, and the machine's 1-minute load is back near what it was before
// the benchmark loaded anything (or, for the data plane, the whole
// machine's CPU was nearly idle over quiet). A sync tail, a second
// partial sync or the load's own aftermath (etcd compaction, the
// apiserver's watch caches) would otherwise fall into whichever proxy's
// window comes first. The wait ends at max whatever the state: the
// machine is shared, and its load may never come back.
type idleGate struct {
	quiet    time.Duration
	cpuSlack float64 // CPU seconds allowed over quiet (a metrics scrape, a timer)
	loadMax  float64
	// machineMax, when > 0, bounds the share of all cores busy over quiet.
	machineMax float64
	max        time.Duration
	samples    []reading
}

// reading is one poll: the proxy's CPU seconds, the 1-minute load and
// the machine's busy and total CPU time (/proc/stat, in ticks).
type reading struct {
	at          time.Duration
	cpu, load   float64
	busy, total uint64
}

// newIdleGate waits for 2 s without CPU growth and a load within 25 % +
// 0.5 of quietLoad, for at most max.
func newIdleGate(quietLoad float64, max time.Duration) *idleGate {
	return &idleGate{quiet: 2 * time.Second, cpuSlack: 0.04, loadMax: quietLoad*1.25 + 0.5, max: max}
}

// newQuietGate waits for 2 s without CPU growth of the proxy and with
// at most a fifth of the machine's cores busy, whatever the 1-minute load
// (which lags a minute behind: after loading 30k Services it stays high
// long after the apiserver is done, or while it is not), for at most max.
func newQuietGate(max time.Duration) *idleGate {
	return &idleGate{quiet: 2 * time.Second, cpuSlack: 0.04, loadMax: math.Inf(1), machineMax: 0.2, max: max}
}

// observe takes a reading at r.at (since the wait began) and says whether
// the wait is over, and if so whether the proxy and the machine were idle
// (false: max was reached).
func (g *idleGate) observe(r reading) (done, idle bool) {
	g.samples = append(g.samples, r)
	// The newest sample at least quiet before this one starts the window;
	// older ones are not needed again.
	start := -1
	for i := len(g.samples) - 1; i >= 0; i-- {
		if r.at-g.samples[i].at >= g.quiet {
			start = i
			break
		}
	}
	if start >= 0 {
		g.samples = g.samples[start:]
		first := g.samples[0]
		machineIdle := g.machineMax <= 0 || busyShare(first, r) <= g.machineMax
		if r.cpu-first.cpu <= g.cpuSlack && r.load <= g.loadMax && machineIdle {
			return true, true
		}
	}
	return r.at >= g.max, false
}

// busyShare is the share of the machine's CPU time busy between two
// readings (1 when unknown).
func busyShare(from, to reading) float64 {
	if to.total <= from.total {
		return 1
	}
	return float64(to.busy-from.busy) / float64(to.total-from.total)
}

// idleWait is what a wait for idle found, in the JSON.
type idleWait struct {
	WaitedS float64 `json:"waitedSeconds"`
	// Idle: the proxy's CPU stopped growing and the load came back;
	// false: the wait gave up at -idle-max.
	Idle       bool    `json:"idle"`
	LoadAvg    float64 `json:"loadAvg"`
	LoadTarget float64 `json:"loadAvgTarget,omitempty"`
	// MachineBusy: the share of the machine's CPU busy over the last
	// quiet period, for the waits that bound it (newQuietGate).
	MachineBusy float64 `json:"machineBusyShare,omitempty"`
}

// waitIdle waits until the proxy is idle (idleGate), polling every 250 ms.
// With h.idleMax 0 it only sleeps 2 s, as the harness did before.
func (h *harness) waitIdle(ctx context.Context, proc *netkit.Proc) idleWait {
	if h.idleMax <= 0 {
		time.Sleep(2 * time.Second)
		return idleWait{WaitedS: 2}
	}
	return h.waitFor(ctx, proc, newIdleGate(h.quietLoad, h.idleMax))
}

// waitQuiet waits until the proxy's CPU is flat and the machine nearly
// idle (newQuietGate), for at most twice -idle-max: before the data
// plane, whose connection rate is any other process's loss.
func (h *harness) waitQuiet(ctx context.Context, proc *netkit.Proc) idleWait {
	if h.idleMax <= 0 {
		time.Sleep(2 * time.Second)
		return idleWait{WaitedS: 2}
	}
	return h.waitFor(ctx, proc, newQuietGate(2*h.idleMax))
}

// waitFor polls the proxy's CPU and the load every 250 ms until g says
// the wait is over.
func (h *harness) waitFor(ctx context.Context, proc *netkit.Proc, g *idleGate) idleWait {
	start := time.Now()
	for {
		r := reading{at: time.Since(start), cpu: procCPU(proc.PID), load: loadAvg()}
		r.busy, r.total = machineCPU()
		done, idle := g.observe(r)
		if done || ctx.Err() != nil || proc.Exited() {
			w := idleWait{WaitedS: time.Since(start).Seconds(), Idle: idle, LoadAvg: r.load}
			if !math.IsInf(g.loadMax, 1) {
				w.LoadTarget = g.loadMax
			}
			if g.machineMax > 0 && len(g.samples) > 0 {
				w.MachineBusy = math.Round(busyShare(g.samples[0], r)*1000) / 1000
			}
			return w
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func (h *harness) logIdle(p *proxy, pl plan, before string, w idleWait) {
	state := "idle"
	if !w.Idle {
		state = "not idle, gave up"
	}
	target := fmt.Sprintf("target %.1f", w.LoadTarget)
	if w.LoadTarget == 0 {
		target = fmt.Sprintf("machine %.0f %% busy over the last 2 s", 100*w.MachineBusy)
	}
	h.log("  %s N=%d min-sync-period=%s: %s after %.1f s before %s (load %.1f, %s)",
		p.name, pl.n, pl.minSync, state, w.WaitedS, before, w.LoadAvg, target)
}

// procCPU is the CPU seconds of a process and its waited-for children.
func procCPU(pid int) float64 {
	self, children, _ := cpuSeconds(pid)
	return self + children
}

// phaseCPU splits a proxy's CPU time into consecutive phases.
type phaseCPU struct {
	pid  int
	last float64
	by   map[string]float64
}

func newPhaseCPU(pid int) *phaseCPU { return &phaseCPU{pid: pid, by: map[string]float64{}} }

// end closes the phase that ran since the previous end (or the process
// start): its CPU seconds are added to name.
func (p *phaseCPU) end(name string) { p.add(name, procCPU(p.pid)) }

func (p *phaseCPU) add(name string, now float64) {
	p.by[name] += now - p.last
	p.last = now
}
