package main

import (
	"context"
	"math"
	"time"

	"github.com/nftproxy/nftproxy/e2e/netkit"
)

// idleGate decides when a proxy is idle enough for a timed window to
// start: its CPU time (with its children's) has stopped growing for
// quiet, and the machine's 1-minute load is back near what it was before
// the benchmark loaded anything. A sync tail, a second partial sync or the
// load's own aftermath (etcd compaction, the apiserver's watch caches)
// would otherwise fall into whichever proxy's window comes first. The wait
// ends at max whatever the state: the machine is shared, and its load may
// never come back.
type idleGate struct {
	quiet    time.Duration
	cpuSlack float64 // CPU seconds allowed over quiet (a metrics scrape, a timer)
	loadMax  float64
	max      time.Duration
	samples  []cpuAt
}

type cpuAt struct {
	at  time.Duration
	cpu float64
}

// newIdleGate waits for 2 s without CPU growth and a load within 25 % +
// 0.5 of quietLoad, for at most max.
func newIdleGate(quietLoad float64, max time.Duration) *idleGate {
	return &idleGate{quiet: 2 * time.Second, cpuSlack: 0.04, loadMax: quietLoad*1.25 + 0.5, max: max}
}

// newQuietGate waits for 2 s without CPU growth of the proxy, whatever
// the load, for at most max.
func newQuietGate(max time.Duration) *idleGate {
	return &idleGate{quiet: 2 * time.Second, cpuSlack: 0.04, loadMax: math.Inf(1), max: max}
}

// observe takes the proxy's total CPU seconds and the 1-minute load at at
// (since the wait began) and says whether the wait is over, and if so
// whether the proxy and the machine were idle (false: max was reached).
func (g *idleGate) observe(at time.Duration, cpu, load float64) (done, idle bool) {
	g.samples = append(g.samples, cpuAt{at, cpu})
	// The newest sample at least quiet before this one starts the window;
	// older ones are not needed again.
	start := -1
	for i := len(g.samples) - 1; i >= 0; i-- {
		if at-g.samples[i].at >= g.quiet {
			start = i
			break
		}
	}
	if start >= 0 {
		g.samples = g.samples[start:]
		if cpu-g.samples[0].cpu <= g.cpuSlack && load <= g.loadMax {
			return true, true
		}
	}
	return at >= g.max, false
}

// idleWait is what a wait for idle found, in the JSON.
type idleWait struct {
	WaitedS float64 `json:"waitedSeconds"`
	// Idle: the proxy's CPU stopped growing and the load came back;
	// false: the wait gave up at -idle-max.
	Idle       bool    `json:"idle"`
	LoadAvg    float64 `json:"loadAvg"`
	LoadTarget float64 `json:"loadAvgTarget"`
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

// waitFor polls the proxy's CPU and the load every 250 ms until g says
// the wait is over.
func (h *harness) waitFor(ctx context.Context, proc *netkit.Proc, g *idleGate) idleWait {
	start := time.Now()
	for {
		load := loadAvg()
		done, idle := g.observe(time.Since(start), procCPU(proc.PID), load)
		if done || ctx.Err() != nil || proc.Exited() {
			return idleWait{WaitedS: time.Since(start).Seconds(), Idle: idle, LoadAvg: load, LoadTarget: g.loadMax}
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func (h *harness) logIdle(p *proxy, pl plan, before string, w idleWait) {
	state := "idle"
	if !w.Idle {
		state = "not idle, gave up"
	}
	h.log("  %s N=%d min-sync-period=%s: %s after %.1f s before %s (load %.1f, target %.1f)",
		p.name, pl.n, pl.minSync, state, w.WaitedS, before, w.LoadAvg, w.LoadTarget)
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
