package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
)

// row aggregates the runs of one proxy at one size.
type row struct {
	proxy string
	n     int
	start []float64 // start -> kernel, s (every run)
	rss   []float64 // peak RSS at the end of a run, MB
	child []float64
	cpu   []float64 // CPU until the first sync, s
	lone0 []float64 // pooled lone-change latencies at min-sync-period 0
	lone1 []float64 // ... at 1 s
	strm1 []float64 // changes 100 ms apart at 1 s
	dumps map[string][]float64
	errs  []string
	load  []float64
}

func aggregate(rep *report) []*row {
	var rows []*row
	find := func(p string, n int) *row {
		for _, r := range rows {
			if r.proxy == p && r.n == n {
				return r
			}
		}
		r := &row{proxy: p, n: n, dumps: map[string][]float64{}}
		rows = append(rows, r)
		return r
	}
	for _, run := range rep.Runs {
		r := find(run.Proxy, run.N)
		r.load = append(r.load, run.LoadBefore)
		if run.Error != "" {
			r.errs = append(r.errs, run.Error)
			continue
		}
		r.start = append(r.start, run.StartToKernelS)
		r.rss = append(r.rss, run.PeakRSSMB)
		if run.ChildPeakRSSMB > 0 {
			r.child = append(r.child, run.ChildPeakRSSMB)
		}
		r.cpu = append(r.cpu, run.CPUAtSyncS)
		if run.MinSync == "0s" {
			r.lone0 = append(r.lone0, run.LoneMs...)
		} else {
			r.lone1 = append(r.lone1, run.LoneMs...)
			r.strm1 = append(r.strm1, run.StreamMs...)
		}
		for k, v := range run.DumpS {
			r.dumps[k] = append(r.dumps[k], v)
		}
	}
	slices.SortStableFunc(rows, func(a, b *row) int { return a.n - b.n })
	return rows
}

func printTable(w io.Writer, rep *report) {
	rows := aggregate(rep)
	fmt.Fprintf(w, "\nbench-compare %s — %d cores, kernel %s, %s RAM; medians over runs; latencies from the EndpointSlice update request to the kernel\n\n",
		rep.Date, rep.Machine.Cores, rep.Machine.Kernel, rep.Machine.Memory)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "N\tproxy\tstart→kernel s\tCPU to sync s\tpeak RSS MB\tchild peak MB\tchange msp=0 p50/p99 ms\tlone msp=1s p50 ms\t100ms-apart msp=1s p50/p99 ms\tshow rules s\tload\t")
	for _, r := range rows {
		var dumps []string
		for _, k := range sortedKeys(r.dumps) {
			dumps = append(dumps, fmt.Sprintf("%s %.2f", k, median(r.dumps[k])))
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.1f\t\n", r.n, r.proxy,
			num(r.start, "%.2f"), num(r.cpu, "%.2f"), num(r.rss, "%.0f"), num(r.child, "%.0f"),
			pair(r.lone0), num(r.lone1, "%.0f"), pair(r.strm1), strings.Join(dumps, "; "), median(r.load))
		for _, e := range r.errs {
			fmt.Fprintf(tw, "\t\terror: %.150s\t\t\t\t\t\t\t\t\t\n", e)
		}
	}
	tw.Flush()
	// Ratios against kube-proxy nftables.
	fmt.Fprintln(w)
	for _, r := range rows {
		if r.proxy == "kube-proxy nftables" || strings.HasPrefix(r.proxy, "kube-proxy") {
			continue
		}
		for _, k := range rows {
			if k.n != r.n || k.proxy != "kube-proxy nftables" || len(k.start) == 0 || len(r.start) == 0 {
				continue
			}
			fmt.Fprintf(w, "N=%d %s : kube-proxy nftables — start→kernel %.1f×, change (msp=0) %.1f×, 100ms-apart change %.1f×, peak RSS %.2f× faster/smaller\n",
				r.n, r.proxy, ratio(k.start, r.start), ratio(k.lone0, r.lone0), ratio(k.strm1, r.strm1), ratio(k.rss, r.rss))
		}
	}
}

func num(v []float64, f string) string {
	if len(v) == 0 {
		return "-"
	}
	return fmt.Sprintf(f, median(v))
}

func pair(v []float64) string {
	if len(v) == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f/%.1f", median(v), p99(v))
}

func ratio(a, b []float64) float64 {
	if len(a) == 0 || len(b) == 0 || median(b) == 0 {
		return 0
	}
	return median(a) / median(b)
}

func sortedKeys(m map[string][]float64) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
