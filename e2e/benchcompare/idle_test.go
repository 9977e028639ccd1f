package main

import (
	"testing"
	"time"
)

// The gate opens once the proxy's CPU has been flat for 2 s and the load
// is back within 25 % + 0.5 of the quiet load (the quiet gate: whatever
// the load, with at most a fifth of the machine busy over those 2 s); it
// gives up at the cap; samples are taken every 250 ms (synthetic here: no
// clock involved).
func TestIdleGate(t *testing.T) {
	type sample struct {
		cpu, load, machine float64 // machine: share of the cores busy since the previous sample
	}
	flat := func(n int, cpu, load float64) []sample {
		out := make([]sample, n)
		for i := range out {
			out[i] = sample{cpu, load, 0.05}
		}
		return out
	}
	busy := func(n int, from, load float64) []sample {
		out := make([]sample, n)
		for i := range out {
			out[i] = sample{from + 0.2*float64(i), load, 0.45} // 80 % of a core
		}
		return out
	}
	machineBusy := func(share float64, ss []sample) []sample {
		for i := range ss {
			ss[i].machine = share
		}
		return ss
	}
	cat := func(parts ...[]sample) []sample {
		var out []sample
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	for _, c := range []struct {
		name     string
		quiet    bool // newQuietGate (40 s): the proxy's CPU only
		samples  []sample
		wantAt   int // index of the sample that ends the wait (-1: none)
		wantIdle bool
	}{
		{"already idle: after 2 s of samples", false, flat(20, 5, 1.0), 8, true},
		{"busy for 3 s, then flat: 2 s after the last growth", false, cat(busy(12, 5, 1.0), flat(20, 7.2, 1.0)), 11 + 8, true},
		{"a scrape's few ms of CPU do not count as busy", false, cat(flat(4, 5, 1.0), flat(10, 5.01, 1.0)), 8, true},
		{"CPU flat but the load still high: waits for the load", false, cat(flat(12, 5, 4.0), flat(4, 5, 2.0), flat(4, 5, 1.7)), 16, true},
		{"never idle: gives up at the cap (60 s)", false, busy(400, 0, 1.0), 240, false},
		{"CPU flat, load never back: gives up at the cap", false, flat(400, 5, 9.0), 240, false},
		{"quiet gate: CPU flat, whatever the load", true, flat(400, 5, 9.0), 8, true},
		{"quiet gate: 2 s after the proxy's check ends", true, cat(busy(12, 5, 3.0), flat(20, 7.2, 3.0)), 11 + 8, true},
		{"quiet gate: gives up at its cap (40 s)", true, busy(400, 0, 1.0), 160, false},
		// Over the 2 s before the sample: one 250 ms of the busy 60 %
		// and seven of 10 % average 16 %.
		{"quiet gate: proxy flat, the apiserver still busy: waits for the machine", true,
			cat(machineBusy(0.6, flat(20, 5, 3.0)), machineBusy(0.1, flat(12, 5, 3.0))), 26, true},
		// 750 ms of a fully busy machine: idle once at most 250 ms of it
		// is in the 2 s.
		{"quiet gate: a spike on the machine counts over the 2 s", true,
			cat(flat(4, 5, 3.0), machineBusy(1.0, flat(3, 5, 3.0)), flat(20, 5, 3.0)), 13, true},
	} {
		g := newIdleGate(1.0, 60*time.Second)
		if c.quiet {
			g = newQuietGate(40 * time.Second)
		}
		got, idle := -1, false
		var busyTicks, totalTicks uint64
		for i, s := range c.samples {
			totalTicks += 50 // 2 cores × 25 ticks in 250 ms
			busyTicks += uint64(s.machine * 50)
			r := reading{at: time.Duration(i) * 250 * time.Millisecond, cpu: s.cpu, load: s.load, busy: busyTicks, total: totalTicks}
			if done, ok := g.observe(r); done {
				got, idle = i, ok
				break
			}
		}
		if got != c.wantAt || idle != c.wantIdle {
			t.Errorf("%s: wait ended at sample %d (idle %t), want %d (idle %t)", c.name, got, idle, c.wantAt, c.wantIdle)
		}
	}
}

// Each phase gets the CPU spent since the previous phase ended; a phase
// met twice (the waits for idle) adds up.
func TestPhaseCPU(t *testing.T) {
	p := &phaseCPU{by: map[string]float64{}}
	for _, s := range []struct {
		phase string
		cpu   float64
	}{{"firstSync", 3}, {"idle", 3.5}, {"changes", 4.25}, {"idle", 4.5}, {"dataPlane", 6}} {
		p.add(s.phase, s.cpu)
	}
	want := map[string]float64{"firstSync": 3, "idle": 0.75, "changes": 0.75, "dataPlane": 1.5}
	for k, v := range want {
		if p.by[k] != v {
			t.Errorf("%s: %v CPU seconds, want %v", k, p.by[k], v)
		}
	}
	if len(p.by) != len(want) {
		t.Errorf("phases %v, want %v", p.by, want)
	}
}
