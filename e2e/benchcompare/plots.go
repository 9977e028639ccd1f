package main

import (
	"fmt"
	"os"
	"strings"
)

// plotSpec is one panel: a figure's median (or p99) against N, the
// median over the runs of each run's statistic (acrossRuns).
type plotSpec struct {
	key, title, yLabel string
	stat               func([]float64) float64
}

var controlPlots = []plotSpec{
	{"start", "process start → all rules in the kernel", "seconds", median},
	{"rss", "peak RSS of the proxy", "MB", median},
	{"lone0", "lone change → kernel, min-sync-period 0 (median)", "ms", median},
	{"conn0", "change → first connection, min-sync-period 0 (median)", "ms", median},
	{"lone1", "lone change → kernel, min-sync-period 1 s (median)", "ms", median},
	{"burst0", "burst of changes in 1 s → all in the kernel (msp 0)", "seconds", median},
}

var dataPlanePlots = []plotSpec{
	{"connect", "connect through the ClusterIP, median", "µs", us(median)},
	{"connect", "connect through the ClusterIP, p99", "µs", us(p99)},
	{"rate", "new connections per second (one client)", "connections/s", median},
	{"direct", "connect to the endpoint directly, median", "µs", us(median)},
}

// us turns a statistic of millisecond samples into microseconds.
func us(stat func([]float64) float64) func([]float64) float64 {
	return func(v []float64) float64 { return stat(v) * 1000 }
}

// panels turns the rows into one panel per spec, a line per proxy, a
// point per size the proxy has a sample at; specs without any point are
// left out.
func panels(rows []*row, specs []plotSpec) []panel {
	var out []panel
	for _, sp := range specs {
		f := figureByKey(sp.key)
		p := panel{title: sp.title, yLabel: sp.yLabel}
		for _, r := range rows {
			v := f.sample(r)
			if len(v) == 0 {
				continue
			}
			i := 0
			for i < len(p.lines) && p.lines[i].name != r.proxy {
				i++
			}
			if i == len(p.lines) {
				p.lines = append(p.lines, series{name: r.proxy})
			}
			p.lines[i].pts = append(p.lines[i].pts, point{float64(r.n), acrossRuns(v, sp.stat)})
		}
		if len(p.lines) > 0 {
			out = append(out, p)
		}
	}
	return out
}

// writePlots writes <base>-control.svg and <base>-dataplane.svg next to
// the JSON file and returns the paths written.
func writePlots(jsonPath string, rep *report) ([]string, error) {
	base := strings.TrimSuffix(jsonPath, ".json")
	rows := aggregate(rep)
	title := fmt.Sprintf("bench-compare %s, %d cores, kernel %s", rep.Date[:10], rep.Machine.Cores, rep.Machine.Kernel)
	var written []string
	for _, f := range []struct {
		suffix string
		specs  []plotSpec
	}{{"-control.svg", controlPlots}, {"-dataplane.svg", dataPlanePlots}} {
		ps := panels(rows, f.specs)
		if len(ps) == 0 {
			continue
		}
		path := base + f.suffix
		out, err := os.Create(path)
		if err != nil {
			return written, err
		}
		err = writeSVG(out, title, ps)
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return written, fmt.Errorf("plot %s: %w", path, err)
		}
		written = append(written, path)
	}
	return written, nil
}
