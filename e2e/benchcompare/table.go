package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
)

// row is every run of one proxy at one size.
type row struct {
	proxy      string
	n          int
	msp0, msp1 []runResult // successful runs at min-sync-period 0 and 1 s
	errs       []string
	load       []float64
}

func aggregate(rep *report) []*row {
	var rows []*row
	for _, run := range rep.Runs {
		i := slices.IndexFunc(rows, func(r *row) bool { return r.proxy == run.Proxy && r.n == run.N })
		if i < 0 {
			rows = append(rows, &row{proxy: run.Proxy, n: run.N})
			i = len(rows) - 1
		}
		r := rows[i]
		r.load = append(r.load, run.LoadBefore)
		switch {
		case run.Error != "":
			r.errs = append(r.errs, run.Error)
		case run.MinSync == "0s":
			r.msp0 = append(r.msp0, run)
		default:
			r.msp1 = append(r.msp1, run)
		}
	}
	slices.SortStableFunc(rows, func(a, b *row) int { return a.n - b.n })
	return rows
}

func (r *row) all() []runResult { return slices.Concat(r.msp0, r.msp1) }

// pool collects each run's sample, leaving out runs without one.
func pool(runs []runResult, f func(runResult) []float64) [][]float64 {
	var out [][]float64
	for _, run := range runs {
		if v := f(run); len(v) > 0 {
			out = append(out, v)
		}
	}
	return out
}

// one turns a per-run figure into a sample (skipping zero: not measured).
func one(f func(runResult) float64) func(runResult) []float64 {
	return func(run runResult) []float64 {
		if v := f(run); v > 0 {
			return []float64{v}
		}
		return nil
	}
}

// acrossRuns is the median over the runs of stat of each run's sample:
// every figure of the tables, plots and README is one, so that with
// several runs (-runs) one disturbed run moves a figure no more than any
// other run does (pooling the samples would let its many slow changes
// outweigh the others). With one run it is that run's stat.
func acrossRuns(runs [][]float64, stat func([]float64) float64) float64 {
	v := make([]float64, 0, len(runs))
	for _, r := range runs {
		v = append(v, stat(r))
	}
	return median(v)
}

// statNote says what the figures are, for the tables' headings.
func statNote(rep *report) string {
	most := 0
	for _, r := range aggregate(rep) {
		most = max(most, len(r.msp0), len(r.msp1))
	}
	if most < 2 {
		return "medians (p99 after the slash) of one run's samples"
	}
	return fmt.Sprintf("medians over the runs (up to %d per proxy, size and min-sync-period) of each run's median (after the slash: of each run's p99)", most)
}

// figure is one line of the side-by-side table: a sample per row, how to
// show it, and whether a ratio against kube-proxy makes sense (lower is
// better for every figure with a ratio).
type figure struct {
	key    string // names it for the plots and the README
	label  string
	sample func(r *row) [][]float64 // a sample per run
	format func(runs [][]float64) string
	ratio  bool
	dp     bool // a data-plane figure
}

func figureByKey(key string) figure {
	for _, f := range figures {
		if f.key == key {
			return f
		}
	}
	panic("no figure " + key)
}

func medianFmt(f string) func([][]float64) string {
	return func(v [][]float64) string { return fmt.Sprintf(f, acrossRuns(v, median)) }
}

func p50p99(v [][]float64) string {
	return fmt.Sprintf("%s / %s", short(acrossRuns(v, median)), short(acrossRuns(v, p99)))
}

// p50p99us shows millisecond samples in microseconds.
func p50p99us(v [][]float64) string {
	return fmt.Sprintf("%.0f / %.0f", acrossRuns(v, median)*1000, acrossRuns(v, p99)*1000)
}

// short prints a millisecond figure with sensible precision.
func short(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func burstS(run runResult) float64 {
	if run.Burst == nil {
		return 0
	}
	return run.Burst.AllInKernelS
}

// dumpS is a run's time for the first of the named ways to show the
// rules that it measured (0: none).
func dumpS(names ...string) func(runResult) float64 {
	return func(run runResult) float64 {
		for _, n := range names {
			if v, ok := run.DumpS[n]; ok {
				return v
			}
		}
		return 0
	}
}

func dpField(f func(*dataPlane) []float64) func(runResult) []float64 {
	return func(run runResult) []float64 {
		if run.DataPlane == nil {
			return nil
		}
		return f(run.DataPlane)
	}
}

var figures = []figure{
	{key: "start", label: "process start → all rules in the kernel (s)", ratio: true, format: medianFmt("%.2f"),
		sample: func(r *row) [][]float64 {
			return pool(r.all(), one(func(x runResult) float64 { return x.StartToKernelS }))
		}},
	{key: "cpu", label: "CPU until then, with children (s)", ratio: true, format: medianFmt("%.2f"),
		sample: func(r *row) [][]float64 {
			return pool(r.all(), one(func(x runResult) float64 {
				if v, ok := x.CPUPhaseS["firstSync"]; ok {
					return v
				}
				return x.CPUAtSyncS // results from before the phases were recorded: no children
			}))
		}},
	{key: "rss", label: "peak RSS (MB)", ratio: true, format: medianFmt("%.0f"),
		sample: func(r *row) [][]float64 { return pool(r.all(), one(func(x runResult) float64 { return x.PeakRSSMB })) }},
	{key: "child", label: "peak RSS of a child (MB)", format: medianFmt("%.0f"),
		sample: func(r *row) [][]float64 {
			return pool(r.all(), one(func(x runResult) float64 { return x.ChildPeakRSSMB }))
		}},
	{key: "lone0", label: "lone change → kernel, min-sync-period 0, p50 / p99 (ms)", ratio: true, format: p50p99,
		sample: func(r *row) [][]float64 { return pool(r.msp0, func(x runResult) []float64 { return x.LoneMs }) }},
	{key: "conn0", label: "change → first connection to the new endpoint, min-sync-period 0 (ms)", ratio: true, format: p50p99,
		sample: func(r *row) [][]float64 { return pool(r.msp0, func(x runResult) []float64 { return x.ConnFirstMs }) }},
	{key: "connKernel0", label: "same change → kernel (ms)", format: p50p99,
		sample: func(r *row) [][]float64 { return pool(r.msp0, func(x runResult) []float64 { return x.ConnKernelMs }) }},
	{key: "metric0", label: "same change, the proxy's programming-latency metric (ms)", format: p50p99,
		sample: func(r *row) [][]float64 {
			return pool(r.msp0, func(x runResult) []float64 { return observed(x.ConnMetricMs) })
		}},
	{key: "lone1", label: "lone change → kernel, min-sync-period 1 s (ms)", ratio: true, format: p50p99,
		sample: func(r *row) [][]float64 { return pool(r.msp1, func(x runResult) []float64 { return x.LoneMs }) }},
	{key: "conn1", label: "change → first connection, min-sync-period 1 s (ms)", ratio: true, format: p50p99,
		sample: func(r *row) [][]float64 { return pool(r.msp1, func(x runResult) []float64 { return x.ConnFirstMs }) }},
	{key: "stream1", label: "changes 100 ms apart → kernel, min-sync-period 1 s (ms)", ratio: true, format: p50p99,
		sample: func(r *row) [][]float64 { return pool(r.msp1, func(x runResult) []float64 { return x.StreamMs }) }},
	{key: "burst0", label: "burst of 1,000 changes (-burst) written within ~1 s → all in the kernel, min-sync-period 0 (s)", ratio: true, format: medianFmt("%.2f"),
		sample: func(r *row) [][]float64 { return pool(r.msp0, one(burstS)) }},
	{key: "burst1", label: "same burst, min-sync-period 1 s (s)", ratio: true, format: medianFmt("%.2f"),
		sample: func(r *row) [][]float64 { return pool(r.msp1, one(burstS)) }},
	{key: "burstSend", label: "the burst's writes took (s; both runs)", format: medianFmt("%.2f"),
		sample: func(r *row) [][]float64 {
			return pool(r.all(), one(func(x runResult) float64 {
				if x.Burst == nil {
					return 0
				}
				return x.Burst.SendSpanS
			}))
		}},
	{key: "connect", label: "connect through the ClusterIP, p50 / p99 (µs)", ratio: true, dp: true, format: p50p99us,
		sample: func(r *row) [][]float64 {
			return pool(r.msp0, dpField(func(d *dataPlane) []float64 { return d.ConnectMs }))
		}},
	{key: "direct", label: "connect to the endpoint directly, p50 / p99 (µs)", dp: true, format: p50p99us,
		sample: func(r *row) [][]float64 {
			return pool(r.msp0, dpField(func(d *dataPlane) []float64 { return d.DirectMs }))
		}},
	{key: "rate", label: "new connections per second through the ClusterIP", dp: true, format: medianFmt("%.0f"),
		sample: func(r *row) [][]float64 {
			return pool(r.msp0, dpField(func(d *dataPlane) []float64 { return []float64{d.PerSecond} }))
		}},
	{key: "show", label: "show the rules to an admin: nftproxy --dump, else nft list table or iptables-save (s)", ratio: true, format: medianFmt("%.2f"),
		sample: func(r *row) [][]float64 {
			return pool(r.msp0, one(dumpS("nftproxy --dump", "nft list table ip kube-proxy", "iptables-save")))
		}},
	{key: "nftList", label: "nft list table ip nftproxy (s)", format: medianFmt("%.2f"),
		sample: func(r *row) [][]float64 { return pool(r.msp0, one(dumpS("nft list table ip nftproxy"))) }},
	{key: "cpuChanges0", label: "CPU in the change windows, min-sync-period 0 (s)", ratio: true, format: medianFmt("%.2f"),
		sample: func(r *row) [][]float64 { return pool(r.msp0, phase("changes")) }},
	{key: "cpuChanges1", label: "CPU in the change windows, min-sync-period 1 s (s)", ratio: true, format: medianFmt("%.2f"),
		sample: func(r *row) [][]float64 { return pool(r.msp1, phase("changes")) }},
	{key: "cpuBurst0", label: "CPU in the burst window, min-sync-period 0 (s)", ratio: true, format: medianFmt("%.2f"),
		sample: func(r *row) [][]float64 { return pool(r.msp0, phase("burst")) }},
	{key: "cpuDataPlane", label: "CPU in the data-plane window (s)", dp: true, format: medianFmt("%.2f"),
		sample: func(r *row) [][]float64 { return pool(r.msp0, phase("dataPlane")) }},
}

// phase is a run's CPU seconds (with children) in one phase, when the run
// had it: 0 is a measurement here (the data plane's packets are the
// kernel's work, not the proxy's).
func phase(name string) func(runResult) []float64 {
	return func(x runResult) []float64 {
		if v, ok := x.CPUPhaseS[name]; ok {
			return []float64{max(v, 0)}
		}
		return nil
	}
}

// sideBySide is the table of one size: a line per figure that any proxy
// has, a column per proxy, and kube-proxy nftables : the first other
// proxy (how many times more time or memory kube-proxy takes).
type sideBySide struct {
	n       int
	proxies []string
	lines   [][]string // label, a cell per proxy, ratio
}

func sideBySideTables(rows []*row, only func(figure) bool) []sideBySide {
	var out []sideBySide
	for _, r := range rows {
		if len(out) == 0 || out[len(out)-1].n != r.n {
			out = append(out, sideBySide{n: r.n})
		}
		t := &out[len(out)-1]
		t.proxies = append(t.proxies, r.proxy)
	}
	for ti := range out {
		t := &out[ti]
		var at []*row
		for _, r := range rows {
			if r.n == t.n {
				at = append(at, r)
			}
		}
		ours, kp := -1, -1
		for i, r := range at {
			if r.proxy == "kube-proxy nftables" {
				kp = i
			} else if ours < 0 && !strings.HasPrefix(r.proxy, "kube-proxy") {
				ours = i
			}
		}
		for _, f := range figures {
			if only != nil && !only(f) {
				continue
			}
			line := []string{f.label}
			any := false
			samples := make([][][]float64, len(at))
			for i, r := range at {
				samples[i] = f.sample(r)
				cell := "–"
				if len(samples[i]) > 0 {
					cell, any = f.format(samples[i]), true
				}
				line = append(line, cell)
			}
			if !any {
				continue
			}
			ratio := ""
			if f.ratio && ours >= 0 && kp >= 0 && len(samples[ours]) > 0 && len(samples[kp]) > 0 && acrossRuns(samples[ours], median) > 0 {
				ratio = fmt.Sprintf("%.1f×", acrossRuns(samples[kp], median)/acrossRuns(samples[ours], median))
			}
			t.lines = append(t.lines, append(line, ratio))
		}
		loads := []string{"1-minute load average at the starts (median)"}
		for _, r := range at {
			loads = append(loads, fmt.Sprintf("%.1f", median(r.load)))
		}
		t.lines = append(t.lines, append(loads, ""))
		for _, r := range at {
			for _, e := range r.errs {
				t.lines = append(t.lines, append(append([]string{"error: " + r.proxy}, repeat("", len(at))...), trim(e, 150)))
			}
		}
	}
	return out
}

func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

func trim(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// ratioHeader names the last column.
const ratioHeader = "kube-proxy nftables : nftproxy"

// printTable writes every size's table for a terminal.
func printTable(w io.Writer, rep *report) {
	fmt.Fprintf(w, "\nbench-compare %s — %d cores, kernel %s, %s RAM; %s; latencies from the EndpointSlice update request\n",
		rep.Date, rep.Machine.Cores, rep.Machine.Kernel, rep.Machine.Memory, statNote(rep))
	for _, t := range sideBySideTables(aggregate(rep), nil) {
		fmt.Fprintf(w, "\nN = %d Services\n", t.n)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, strings.Join(append(append([]string{""}, t.proxies...), ratioHeader), "\t")+"\t")
		for _, l := range t.lines {
			fmt.Fprintln(tw, strings.Join(l, "\t")+"\t")
		}
		tw.Flush()
	}
}

// markdownTable writes one size's table as GitHub markdown.
func markdownTable(w io.Writer, t sideBySide) {
	head := append(append([]string{""}, t.proxies...), ratioHeader)
	fmt.Fprintf(w, "| %s |\n|%s\n", strings.Join(head, " | "), strings.Repeat("---|", len(head)))
	for _, l := range t.lines {
		fmt.Fprintf(w, "| %s |\n", strings.Join(l, " | "))
	}
}

// summaryLine is one figure of one proxy at one size in the JSON: the
// value the tables show, and each run's own, so a reader can see the
// spread the median hides.
type summaryLine struct {
	Proxy  string `json:"proxy"`
	N      int    `json:"services"`
	Figure string `json:"figure"`
	Label  string `json:"label"`
	Runs   int    `json:"runs"`
	// Median is the median over the runs of each run's median, P99 of
	// each run's p99 (figures with many samples per run only).
	Median     float64   `json:"median"`
	P99        float64   `json:"p99,omitempty"`
	RunMedians []float64 `json:"runMedians"`
}

// summarize is every figure the tables show, as numbers.
func summarize(rep *report) []summaryLine {
	var out []summaryLine
	for _, r := range aggregate(rep) {
		for _, f := range figures {
			v := f.sample(r)
			if len(v) == 0 {
				continue
			}
			l := summaryLine{Proxy: r.proxy, N: r.n, Figure: f.key, Label: f.label, Runs: len(v), Median: acrossRuns(v, median)}
			for _, run := range v {
				l.RunMedians = append(l.RunMedians, median(run))
				if len(run) > 1 {
					l.P99 = acrossRuns(v, p99)
				}
			}
			out = append(out, l)
		}
	}
	return out
}
