package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// sampleReport is a small run: two proxies at one size (both min sync
// periods), one of them also at a data-plane-only size, and a failed run.
func sampleReport() *report {
	dp := func(ms float64) *dataPlane {
		return &dataPlane{ConnectMs: []float64{ms, ms, ms * 10}, DirectMs: []float64{0.03}, PerSecond: 5000}
	}
	return &report{
		Date: "2026-11-30T21:00:00Z", Command: "benchcompare -n 1000",
		Machine: machine{Cores: 2, Kernel: "6.18", Memory: "24 GB", Go: "go1.26"},
		Runs: []runResult{
			{Proxy: "nftproxy", N: 1, M: 10, MinSync: "0s", StartToKernelS: 0.1, PeakRSSMB: 40, DataPlane: dp(0.04), LoadBefore: 2},
			{Proxy: "nftproxy", N: 1000, M: 10, MinSync: "0s", StartToKernelS: 0.5, PeakRSSMB: 60, LoneMs: []float64{10, 12},
				Burst: &burstResult{Changes: 1000, AllInKernelS: 1.2}, DataPlane: dp(0.05), LoadBefore: 3, LoadAfter: 4},
			{Proxy: "nftproxy", N: 1000, M: 10, MinSync: "1s", StartToKernelS: 0.7, PeakRSSMB: 62, LoneMs: []float64{9}, LoadBefore: 5},
			{Proxy: "kube-proxy nftables", N: 1000, M: 10, MinSync: "0s", StartToKernelS: 2.0, PeakRSSMB: 90, LoneMs: []float64{40, 44},
				Burst: &burstResult{Changes: 1000, AllInKernelS: 2.4}, DataPlane: dp(0.06), LoadBefore: 6},
			{Proxy: "kube-proxy nftables", N: 1000, M: 10, MinSync: "1s", Error: "first sync: proxy exited", LoadBefore: 7},
		},
	}
}

// The side-by-side table has a line per measured figure only, the
// proxies as columns in the order they ran, medians pooled over the runs
// of a size, the kube-proxy : nftproxy ratio, and the errors.
func TestSideBySide(t *testing.T) {
	tables := sideBySideTables(aggregate(sampleReport()), nil)
	if len(tables) != 2 || tables[0].n != 1 || tables[1].n != 1000 {
		t.Fatalf("want tables for N=1 and N=1000, got %+v", tables)
	}
	var md bytes.Buffer
	markdownTable(&md, tables[1])
	want := []string{
		"|  | nftproxy | kube-proxy nftables | kube-proxy nftables : nftproxy |",
		"| process start → all rules in the kernel (s) | 0.60 | 2.00 | 3.3× |",
		"| lone change → kernel, min-sync-period 0, p50 / p99 (ms) | 11.0 / 12.0 | 42.0 / 44.0 | 3.8× |",
		"| lone change → kernel, min-sync-period 1 s (ms) | 9.00 / 9.00 | – |  |",
		"| burst of 1,000 changes (-burst) written within ~1 s → all in the kernel, min-sync-period 0 (s) | 1.20 | 2.40 | 2.0× |",
		"| connect through the ClusterIP, p50 / p99 (µs) | 50 / 500 | 60 / 600 | 1.2× |",
		"| 1-minute load average at the starts (median) | 4.0 | 6.5 |  |",
		"| error: kube-proxy nftables |  |  | first sync: proxy exited |",
	}
	for _, w := range want {
		if !strings.Contains(md.String(), w+"\n") {
			t.Errorf("table lacks line\n%s\ngot:\n%s", w, md.String())
		}
	}
	if strings.Contains(md.String(), "changes 100 ms apart") {
		t.Errorf("a figure nobody measured is shown:\n%s", md.String())
	}
}

// The data-plane table has a line per size with a cell per proxy, "–"
// where a proxy did not run at that size.
func TestDataPlaneBySize(t *testing.T) {
	got := dataPlaneBySize(aggregate(sampleReport()))
	want := "| Services | nftproxy | kube-proxy nftables |\n|---|---|---|\n" +
		"| 1 | 40 / 400 µs, 5000/s | – |\n" +
		"| 1000 | 50 / 500 µs, 5000/s | 60 / 600 µs, 5000/s |\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}

	// A window that started on a busy machine is marked, and the mark
	// explained; one on a quiet machine, or after a wait that merely met
	// the cap with the machine idle, is not.
	rep := sampleReport()
	rep.Runs[1].IdleBeforeDataPlane = &idleWait{WaitedS: 120, Idle: false, MachineBusy: 0.99}
	rep.Runs[3].IdleBeforeDataPlane = &idleWait{WaitedS: 120, Idle: false, MachineBusy: 0.1}
	got = dataPlaneBySize(aggregate(rep))
	if !strings.Contains(got, "| 1000 | 50 / 500 µs, 5000/s † | 60 / 600 µs, 5000/s |\n") || !strings.Contains(got, "\n† measured while the machine was still busy") {
		t.Errorf("the busy window is not marked and explained:\n%s", got)
	}
}

// A generated block replaces only what is between its markers; a
// document without them is refused rather than appended to.
func TestReplaceBlock(t *testing.T) {
	begin, end := markers("readme")
	doc := []byte("intro\n" + begin + "\nold table\n" + end + "\nrest\n")
	out, err := replaceBlock(doc, "readme", "new table\n")
	if err != nil {
		t.Fatal(err)
	}
	if want := "intro\n" + begin + "\nnew table\n" + end + "\nrest\n"; string(out) != want {
		t.Errorf("got %q, want %q", out, want)
	}
	again, _ := replaceBlock(out, "readme", "new table")
	if !bytes.Equal(again, out) {
		t.Error("rendering twice changed the document")
	}
	if _, err := replaceBlock([]byte("no markers"), "readme", "x"); err == nil {
		t.Error("want an error without markers")
	}
	if _, err := replaceBlock([]byte(end+begin), "readme", "x"); err == nil {
		t.Error("want an error for markers out of order")
	}
}

// The JSON a run writes reads back into the same report, so the README
// can be generated from it later.
func TestReportJSONRoundTrip(t *testing.T) {
	rep := sampleReport()
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"burst":{"changes":1000`, `"dataPlane":{"connectMs":[0.04,0.04,0.4]`, `"connectionsPerSecond":5000`, `"loadAvgBefore":2`} {
		if !bytes.Contains(b, []byte(key)) {
			t.Errorf("JSON lacks %s: %s", key, b)
		}
	}
	var back report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	var md1, md2 bytes.Buffer
	markdownTable(&md1, sideBySideTables(aggregate(rep), nil)[1])
	markdownTable(&md2, sideBySideTables(aggregate(&back), nil)[1])
	if md1.String() != md2.String() {
		t.Errorf("table differs after a JSON round trip:\n%s\n%s", md1.String(), md2.String())
	}
}

// With several runs every figure is the median over the runs of each
// run's statistic, in the table, the plots and the JSON summary: one
// disturbed run with many slow samples does not outweigh two calm ones
// (pooled, the median would be 51 ms and the p99 100 ms).
func TestFiguresAreMediansOverRuns(t *testing.T) {
	run := func(load float64, lone ...float64) runResult {
		return runResult{Proxy: "nftproxy", N: 1000, M: 10, MinSync: "0s", LoneMs: lone, StartToKernelS: load, LoadBefore: load,
			CPUPhaseS: map[string]float64{"changes": load / 10, "dataPlane": 0}}
	}
	rep := &report{Date: "2026-12-01T06:00:00Z", Runs: []runResult{
		run(1, 1, 1, 1), run(2, 2, 2, 2), run(9, 100, 100, 100, 100, 100, 100),
		{Proxy: "kube-proxy nftables", N: 1000, M: 10, MinSync: "0s", LoneMs: []float64{40}, StartToKernelS: 5, PeakRSSMB: 90},
	}}
	lone0 := figureByKey("lone0")
	if got := lone0.format(lone0.sample(aggregate(rep)[0])); got != "2.00 / 2.00" {
		t.Errorf("table cell %q, want the runs' medians 1, 2, 100 → 2.00 and p99s → 2.00", got)
	}
	if note := statNote(rep); !strings.Contains(note, "medians over the runs (up to 3") {
		t.Errorf("the heading does not say what the figures are: %q", note)
	}
	var found bool
	for _, l := range summarize(rep) {
		if l.Figure == "lone0" && l.Proxy == "nftproxy" {
			found = true
			if l.Runs != 3 || l.Median != 2 || l.P99 != 2 || len(l.RunMedians) != 3 || l.RunMedians[2] != 100 {
				t.Errorf("summary %+v", l)
			}
		}
	}
	if !found {
		t.Error("no lone0 line in the JSON summary")
	}
	plotted := false
	for _, p := range panels(aggregate(rep), controlPlots) {
		if strings.HasPrefix(p.title, "lone change → kernel, min-sync-period 0") {
			plotted = true
			if p.lines[0].name != "nftproxy" || p.lines[0].pts[0].y != 2 {
				t.Errorf("plot %q: %s at N=1000 %v, want 2", p.title, p.lines[0].name, p.lines[0].pts[0].y)
			}
		}
	}
	if !plotted {
		t.Error("no plot of lone changes")
	}
	var md bytes.Buffer
	for _, tb := range sideBySideTables(aggregate(rep), nil) {
		markdownTable(&md, tb)
	}
	for _, line := range []string{
		"| process start → all rules in the kernel (s) | 2.00 |",
		"| CPU in the change windows, min-sync-period 0 (s) | 0.20 |",
		"| CPU in the data-plane window (s) | 0.00 |", // measured, and none
	} {
		if !strings.Contains(md.String(), line) {
			t.Errorf("want the median run's figure\n%s\ngot:\n%s", line, md.String())
		}
	}
	if readme := readmeBlock(rep); !strings.Contains(readme, "medians over the runs") {
		t.Errorf("the README block does not say it shows medians over runs:\n%s", readme)
	}
}
