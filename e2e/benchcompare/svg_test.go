package main

import (
	"bytes"
	"encoding/xml"
	"io"
	"math"
	"strings"
	"testing"
)

// The plot is well-formed SVG with a polyline per proxy, a marker per
// point, and every proxy named in a legend.
func TestWriteSVG(t *testing.T) {
	ps := panels(aggregate(sampleReport()), append(controlPlots, dataPlanePlots...))
	if len(ps) == 0 {
		t.Fatal("no panels")
	}
	var b bytes.Buffer
	if err := writeSVG(&b, "title & more", ps); err != nil {
		t.Fatal(err)
	}
	d := xml.NewDecoder(bytes.NewReader(b.Bytes()))
	counts := map[string]int{}
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed: %v\n%s", err, b.String())
		}
		if se, ok := tok.(xml.StartElement); ok {
			counts[se.Name.Local]++
		}
	}
	lines, points := 0, 0
	for _, p := range ps {
		lines += len(p.lines)
		for _, s := range p.lines {
			points += len(s.pts)
		}
	}
	if counts["polyline"] != lines || counts["circle"] != points {
		t.Errorf("%d polylines and %d circles, want %d and %d", counts["polyline"], counts["circle"], lines, points)
	}
	for _, name := range []string{">nftproxy<", ">kube-proxy nftables<", "title &amp; more"} {
		if !strings.Contains(b.String(), name) {
			t.Errorf("SVG lacks %q", name)
		}
	}
}

// N is placed on a log axis (1 … 10k spans decades evenly); a small range
// of values gets a linear axis from zero rounded up to 1, 2 or 5 × 10^k.
func TestAxis(t *testing.T) {
	x := newAxis([]float64{1, 1000, 10000}, 0, 400, true)
	if x.lo != 1 || x.hi != 10000 || x.px(100) != 200 || x.px(1) != 0 || x.px(10000) != 400 {
		t.Errorf("log axis: %+v, px(100)=%v", x, x.px(100))
	}
	y := newAxis([]float64{3, 7.5}, 300, 0, false)
	if y.log || y.lo != 0 || y.hi != 10 || y.px(5) != 150 {
		t.Errorf("linear axis: %+v, px(5)=%v", y, y.px(5))
	}
	wide := newAxis([]float64{0.5, 780}, 300, 0, false)
	if !wide.log || wide.lo != 0.1 || wide.hi != 1000 {
		t.Errorf("values 20 times apart or more should get a log axis: %+v", wide)
	}
	for _, c := range []struct{ in, want float64 }{{0.7, 1}, {1.5, 2}, {3, 5}, {42, 50}, {100, 100}} {
		if got := niceCeil(c.in); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("niceCeil(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}
