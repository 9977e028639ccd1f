package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nftproxy/nftproxy/e2e/lab"
	"github.com/nftproxy/nftproxy/e2e/netkit"
)

// runResult is one start of one proxy at one size and min-sync-period.
type runResult struct {
	Proxy   string `json:"proxy"`
	N       int    `json:"services"`
	M       int    `json:"endpointsPerService"`
	MinSync string `json:"minSyncPeriod"`

	// StartToKernel: process start until the first and the last Service
	// are in the kernel.
	StartToKernelS float64 `json:"startToKernelSeconds"`
	// At the first complete sync, and at the end of the run.
	RSSAtSyncMB    float64 `json:"peakRSSAtSyncMB"`
	PeakRSSMB      float64 `json:"peakRSSMB"`
	ChildPeakRSSMB float64 `json:"childPeakRSSMB,omitempty"`
	Children       int     `json:"childrenSeen,omitempty"`
	ChildNames     string  `json:"childNames,omitempty"`
	CPUAtSyncS     float64 `json:"cpuAtSyncSeconds"`
	// SysAtSyncS is the kernel's part of CPUAtSyncS (system time: netlink
	// and the nftables commit run in the proxy's own syscalls).
	SysAtSyncS   float64 `json:"sysCPUAtSyncSeconds"`
	CPUS         float64 `json:"cpuSeconds"`
	CPUChildrenS float64 `json:"cpuChildrenSeconds,omitempty"`
	// CPUPhaseS is the CPU (user+system, the proxy's and its waited-for
	// children's) spent in each phase of the run: firstSync (start to the
	// rules in the kernel), idle (the waits for idle), changes (lone,
	// connection-target and 100 ms-apart changes), burst, dataPlane.
	CPUPhaseS map[string]float64 `json:"cpuSecondsByPhase,omitempty"`
	// The waits for idle before the change windows, the data-plane
	// window and the dumps (idle.go).
	IdleBeforeChanges   *idleWait `json:"idleBeforeChanges,omitempty"`
	IdleBeforeDataPlane *idleWait `json:"idleBeforeDataPlane,omitempty"`
	IdleBeforeDumps     *idleWait `json:"idleBeforeDumps,omitempty"`

	// Lone changes: one at a time, the next one after the previous was
	// seen (plus a pause). Stream: changes every 100 ms regardless.
	// Latencies from just before the update request to the kernel, in ms.
	LoneMs   []float64 `json:"loneChangeMs,omitempty"`
	StreamMs []float64 `json:"streamChangeMs,omitempty"`
	// APIMs is the update request's own round trip (part of every latency).
	APIMs []float64 `json:"apiRoundTripMs,omitempty"`

	// Connection-target changes (connchange.go): request → kernel,
	// request → first connection answered by the new endpoint, and the
	// proxy's own network-programming metric (-1: nothing observed).
	ConnKernelMs []float64 `json:"connChangeKernelMs,omitempty"`
	ConnFirstMs  []float64 `json:"connChangeFirstConnectionMs,omitempty"`
	ConnMetricMs []float64 `json:"connChangeProgrammingMetricMs,omitempty"`

	Burst     *burstResult `json:"burst,omitempty"`
	DataPlane *dataPlane   `json:"dataPlane,omitempty"`

	DumpS map[string]float64 `json:"dumpSeconds,omitempty"`

	LoadBefore float64 `json:"loadAvgBefore"`
	LoadAfter  float64 `json:"loadAvgAfter"`
	Error      string  `json:"error,omitempty"`
}

// plan says what one run measures.
type plan struct {
	n          int
	minSync    time.Duration
	lone       int           // lone changes
	lonePause  time.Duration // pause after each lone change was seen
	stream     int           // changes 100 ms apart
	conn       int           // changes of the connection target
	burst      int           // changes in one burst of a second
	dataPlane  bool
	dumps      bool
	syncBudget time.Duration
}

// harness holds what every run shares.
type harness struct {
	env        *nodeEnv
	loader     *loader
	target     *connTarget
	kubeconfig string
	logDir     string
	m          int
	nextChange int // changedAddr counter: every change is a new address
	profileDir string
	log        func(format string, args ...any)
	// quietLoad is the 1-minute load before the benchmark loaded
	// anything; idleMax caps each wait for idle (0: a fixed 2 s pause).
	quietLoad float64
	idleMax   time.Duration
}

// flushNode removes every table of the node namespace: each run starts
// from an empty kernel (the namespace is ours; nothing else lives there).
func (h *harness) flushNode() error {
	out, err := exec.Command("ip", "netns", "exec", h.env.node.NS.Name, "nft", "flush", "ruleset").CombinedOutput()
	if err != nil {
		return fmt.Errorf("nft flush ruleset in %s: %w: %s", h.env.node.NS.Name, err, out)
	}
	return nil
}

func (h *harness) run(ctx context.Context, p *proxy, pl plan) (res runResult) {
	res = runResult{Proxy: p.name, N: pl.n, M: h.m, MinSync: pl.minSync.String(), LoadBefore: loadAvg()}
	defer func() { res.LoadAfter = loadAvg() }()
	if err := h.runInto(ctx, p, pl, &res); err != nil {
		res.Error = err.Error()
		h.log("  %s: ERROR %v", p.name, err)
	}
	return res
}

func (h *harness) runInto(ctx context.Context, p *proxy, pl plan, res *runResult) error {
	if err := h.flushNode(); err != nil {
		return err
	}
	logPath := filepath.Join(h.logDir, fmt.Sprintf("%s-%d-%s.log", strings.ReplaceAll(p.name, " ", "-"), pl.n, pl.minSync))
	start := time.Now()
	proc, err := h.env.node.NS.Start(logPath, p.args(h.kubeconfig, pl.minSync)...)
	if err != nil {
		return err
	}
	defer proc.Stop(10 * time.Second)
	children := watchChildren(proc.PID)
	cpu := newPhaseCPU(proc.PID)
	defer func() { res.CPUPhaseS = cpu.by }()
	childrenDone := false
	defer func() {
		if !childrenDone {
			children.result()
		}
	}()

	// The first and the last Service of the load, in each family.
	probes := []netip.Addr{h.loader.clusterIP[pl.n-1], h.loader.clusterIP[0]}
	if h.loader.dualStack {
		probes = append(probes, clusterIP6Of(pl.n-1), clusterIP6Of(0))
	}
	err = poll(ctx, proc, pl.syncBudget, p.pollEvery, func() (bool, error) {
		for _, ip := range probes {
			if ok, err := p.programmed(h.env, ip); !ok || err != nil {
				return false, err
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("first sync: %w (log %s)", err, logPath)
	}
	res.StartToKernelS = time.Since(start).Seconds()
	hwm, _, _ := memKB(proc.PID)
	res.RSSAtSyncMB = float64(hwm) / 1024
	user, sys, _, _ := cpuSplit(proc.PID)
	res.CPUAtSyncS, res.SysAtSyncS = user+sys, sys
	h.log("  %s N=%d min-sync-period=%s: rules in the kernel %.2f s after start, peak RSS %.0f MB, CPU %.2f s",
		p.name, pl.n, pl.minSync, res.StartToKernelS, res.RSSAtSyncMB, res.CPUAtSyncS)
	cpu.end("firstSync")
	h.saveProfile(p, pl, "sync")
	// Let a proxy finish what follows its first sync (kube-proxy runs a
	// second, partial one), and the machine the load's aftermath, before
	// changes are timed.
	if pl.lone+pl.conn+pl.stream+pl.burst > 0 {
		w := h.waitIdle(ctx, proc)
		res.IdleBeforeChanges = &w
		h.logIdle(p, pl, "changes", w)
		cpu.end("idle")
	}

	for c := 0; c < pl.lone; c++ {
		lat, api, err := h.change(ctx, proc, p, pl.n, c)
		if err != nil {
			return fmt.Errorf("lone change %d: %w", c, err)
		}
		res.LoneMs = append(res.LoneMs, lat)
		res.APIMs = append(res.APIMs, api)
		time.Sleep(pl.lonePause)
	}
	if pl.lone > 0 {
		h.log("  %s N=%d min-sync-period=%s: lone change -> kernel median %.1f ms, p99 %.1f ms (API round trip median %.1f ms)",
			p.name, pl.n, pl.minSync, median(res.LoneMs), p99(res.LoneMs), median(res.APIMs))
	}
	for c := 0; c < pl.conn; c++ {
		s, err := h.connChange(ctx, proc, p)
		if err != nil {
			return fmt.Errorf("connection-target change %d: %w", c, err)
		}
		res.ConnKernelMs = append(res.ConnKernelMs, s.kernelMs)
		res.ConnFirstMs = append(res.ConnFirstMs, s.connMs)
		res.ConnMetricMs = append(res.ConnMetricMs, s.metricMs)
		time.Sleep(pl.lonePause)
	}
	if pl.conn > 0 {
		h.log("  %s N=%d min-sync-period=%s: change -> kernel %.1f ms, -> first connection %.1f ms, proxy's metric %.1f ms (medians)",
			p.name, pl.n, pl.minSync, median(res.ConnKernelMs), median(res.ConnFirstMs), median(observed(res.ConnMetricMs)))
	}
	if pl.stream > 0 {
		res.StreamMs, err = h.streamChanges(ctx, proc, p, pl.n, pl.stream, 100*time.Millisecond)
		if err != nil {
			return fmt.Errorf("stream of changes: %w", err)
		}
		h.log("  %s N=%d min-sync-period=%s: changes 100 ms apart -> kernel median %.1f ms, p99 %.1f ms",
			p.name, pl.n, pl.minSync, median(res.StreamMs), p99(res.StreamMs))
	}

	if pl.lone+pl.conn+pl.stream > 0 {
		cpu.end("changes")
	}
	if pl.burst > 0 {
		if res.Burst, err = h.burst(ctx, proc, p, pl.n, pl.burst, time.Second); err != nil {
			return fmt.Errorf("burst: %w", err)
		}
		h.log("  %s N=%d min-sync-period=%s: burst of %d changes sent in %.2f s, all in the kernel %.2f s after the first",
			p.name, pl.n, pl.minSync, res.Burst.Changes, res.Burst.SendSpanS, res.Burst.AllInKernelS)
		cpu.end("burst")
	}
	if pl.dataPlane {
		w := h.waitQuiet(ctx, proc)
		res.IdleBeforeDataPlane = &w
		h.logIdle(p, pl, "the data plane", w)
		cpu.end("idle")
		if res.DataPlane, err = h.measureDataPlane(ctx, proc, p); err != nil {
			return fmt.Errorf("data plane: %w", err)
		}
		dp := res.DataPlane
		h.log("  %s N=%d: connect through the ClusterIP p50 %.3f ms p99 %.3f ms (direct p50 %.3f ms), %.0f connections/s",
			p.name, pl.n, median(dp.ConnectMs), p99(dp.ConnectMs), median(dp.DirectMs), dp.PerSecond)
		cpu.end("dataPlane")
	}

	h.saveProfile(p, pl, "end")
	hwm, _, _ = memKB(proc.PID)
	res.PeakRSSMB = float64(hwm) / 1024
	res.CPUS, res.CPUChildrenS, _ = cpuSeconds(proc.PID)
	childHWM, n, names := children.result()
	childrenDone = true
	res.ChildPeakRSSMB, res.Children, res.ChildNames = float64(childHWM)/1024, n, strings.Join(names, ",")

	if pl.dumps {
		// An admin's dump competes with whatever the proxy still does
		// after the burst (its check of the kernel, the collector): wait
		// for it as before the other windows.
		w := h.waitIdle(ctx, proc)
		res.IdleBeforeDumps = &w
		h.logIdle(p, pl, "the dumps", w)
		res.DumpS = map[string]float64{}
		for _, d := range p.dumps {
			var ts []float64
			for range dumpRuns {
				t0 := time.Now()
				cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.env.node.NS.Name}, d.args...)...)
				if out, err := cmd.CombinedOutput(); err != nil {
					return fmt.Errorf("%s: %w: %.300s", d.name, err, out)
				}
				ts = append(ts, time.Since(t0).Seconds())
			}
			res.DumpS[d.name] = median(ts)
		}
	}
	return nil
}

// dumpRuns is how many times each way to show the rules is timed (the
// table shows the median): a dump lasts a few tenths of a second, where
// one busy moment of the machine weighs.
const dumpRuns = 5

// change makes the c-th lone change and waits until the kernel has it.
func (h *harness) change(ctx context.Context, proc *netkit.Proc, p *proxy, n, c int) (latMs, apiMs float64, err error) {
	addr := changedAddr(h.nextChange)
	h.nextChange++
	svc := (c*7919 + 13) % n
	sent, err := h.loader.changeEndpoint(ctx, svc, addr)
	if err != nil {
		return 0, 0, err
	}
	acked := time.Since(sent)
	if err := poll(ctx, proc, 60*time.Second, p.pollEvery, func() (bool, error) { return p.hasEndpoint(h.env, addr) }); err != nil {
		return 0, 0, fmt.Errorf("endpoint %s of %s: %w", addr, serviceName(svc), err)
	}
	return ms(time.Since(sent)), ms(acked), nil
}

// streamChanges sends count changes every interval, without waiting for
// the kernel in between, and returns each one's latency.
func (h *harness) streamChanges(ctx context.Context, proc *netkit.Proc, p *proxy, n, count int, interval time.Duration) ([]float64, error) {
	type pending struct {
		addr netip.Addr
		sent time.Time
		lat  float64
	}
	var mu sync.Mutex
	var all []*pending
	errc := make(chan error, 1)
	go func() {
		next := time.Now()
		for c := 0; c < count; c++ {
			time.Sleep(time.Until(next))
			next = next.Add(interval)
			mu.Lock()
			addr := changedAddr(h.nextChange)
			h.nextChange++
			mu.Unlock()
			svc := (c*104729 + 7) % n
			sent, err := h.loader.changeEndpoint(ctx, svc, addr)
			if err != nil {
				errc <- err
				return
			}
			mu.Lock()
			all = append(all, &pending{addr: addr, sent: sent, lat: -1})
			mu.Unlock()
		}
		errc <- nil
	}()
	sendDone := false
	deadline := time.Now().Add(time.Duration(count)*interval + 60*time.Second)
	for {
		select {
		case err := <-errc:
			if err != nil {
				return nil, err
			}
			sendDone = true
		default:
		}
		mu.Lock()
		todo := slices.Clone(all)
		mu.Unlock()
		remaining := 0
		for _, pd := range todo {
			if pd.lat >= 0 {
				continue
			}
			ok, err := p.hasEndpoint(h.env, pd.addr)
			if err != nil {
				return nil, err
			}
			if ok {
				pd.lat = ms(time.Since(pd.sent))
			} else {
				remaining++
			}
		}
		if sendDone && remaining == 0 {
			break
		}
		if proc.Exited() {
			return nil, fmt.Errorf("proxy exited: %v", proc.Wait())
		}
		if time.Now().After(deadline) {
			return nil, errors.New("changes not all in the kernel within a minute")
		}
		time.Sleep(p.pollEvery)
	}
	out := make([]float64, len(all))
	for i, pd := range all {
		out[i] = pd.lat
	}
	return out, nil
}

// poll calls cond every interval until it is true, the process exits or
// the budget is spent.
func poll(ctx context.Context, proc *netkit.Proc, budget, interval time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(budget)
	var last error
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		if err != nil {
			last = err
		}
		if proc.Exited() {
			return fmt.Errorf("proxy exited: %v", proc.Wait())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not reached within %s (last error: %v)", budget, last)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(interval)
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// saveProfile fetches the proxy's heap profile (live objects after a GC,
// and every allocation since start) into the profile directory.
func (h *harness) saveProfile(p *proxy, pl plan, when string) {
	if !p.profiling || h.profileDir == "" {
		return
	}
	if err := os.MkdirAll(h.profileDir, 0o755); err != nil {
		h.log("  profile: %v", err)
		return
	}
	client := &http.Client{Transport: &http.Transport{DialContext: lab.DialerIn(h.env.node.NS)}, Timeout: time.Minute}
	resp, err := client.Get("http://127.0.0.1:10249/debug/pprof/heap?gc=1")
	if err != nil {
		h.log("  profile: %v", err)
		return
	}
	defer resp.Body.Close()
	path := filepath.Join(h.profileDir, fmt.Sprintf("%s-%d-%s-%s.heap", strings.ReplaceAll(p.name, " ", "-"), pl.n, pl.minSync, when))
	f, err := os.Create(path)
	if err != nil {
		h.log("  profile: %v", err)
		return
	}
	defer f.Close()
	if _, err := io.Copy(f, resp.Body); err != nil {
		h.log("  profile: %v", err)
	}
}
