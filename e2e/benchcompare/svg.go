package main

import (
	"fmt"
	"html"
	"io"
	"math"
	"strings"
)

// A small SVG line chart writer (a few panels per file, a line per proxy,
// N on a log axis): enough for these plots without a plotting module.

type point struct{ x, y float64 }

type series struct {
	name string
	pts  []point
}

// panel is one chart: y against N.
type panel struct {
	title, yLabel string
	lines         []series
}

const (
	panelW, panelH = 460, 300
	padL, padR     = 62, 16
	padT, padB     = 34, 84 // the legend sits below the x axis, two names a line
	columns        = 2
)

var palette = []string{"#1b6ec2", "#d9480f", "#2b8a3e", "#862e9c", "#e67700", "#495057"}

// writeSVG lays the panels out in two columns.
func writeSVG(w io.Writer, title string, panels []panel) error {
	rows := (len(panels) + columns - 1) / columns
	width, height := columns*panelW, rows*panelH+30
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/><text x="%d" y="20" font-size="14" text-anchor="middle">%s</text>`+"\n", width/2, html.EscapeString(title))
	for i, p := range panels {
		drawPanel(&b, float64((i%columns)*panelW), float64(30+(i/columns)*panelH), p)
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// axis maps values to pixels, logarithmically when the largest value is
// more than 20 times the smallest (10 ms next to 800 ms would be a flat
// line on the floor of a linear axis).
type axis struct {
	lo, hi   float64
	log      bool
	from, to float64 // pixels
}

func newAxis(vals []float64, from, to float64, forceLog bool) axis {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, v := range vals {
		lo, hi = math.Min(lo, v), math.Max(hi, v)
	}
	if math.IsInf(lo, 0) {
		lo, hi = 0, 1
	}
	a := axis{from: from, to: to}
	if forceLog || (lo > 0 && hi/lo > 20) {
		a.log = true
		lo = math.Max(lo, 1e-6)
		a.lo, a.hi = math.Pow(10, math.Floor(math.Log10(lo))), math.Pow(10, math.Ceil(math.Log10(hi)))
		if a.hi <= a.lo {
			a.hi = a.lo * 10
		}
		return a
	}
	a.lo, a.hi = 0, niceCeil(hi)
	return a
}

// niceCeil rounds up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func (a axis) px(v float64) float64 {
	if a.log {
		v = math.Max(v, a.lo)
		return a.from + (math.Log10(v)-math.Log10(a.lo))/(math.Log10(a.hi)-math.Log10(a.lo))*(a.to-a.from)
	}
	return a.from + (v-a.lo)/(a.hi-a.lo)*(a.to-a.from)
}

// ticks are the labelled values: the decades of a log axis, five steps of
// a linear one.
func (a axis) ticks() []float64 {
	var out []float64
	if a.log {
		for v := a.lo; v <= a.hi*1.0001; v *= 10 {
			out = append(out, v)
		}
		return out
	}
	for i := 0; i <= 5; i++ {
		out = append(out, a.lo+(a.hi-a.lo)*float64(i)/5)
	}
	return out
}

func label(v float64) string {
	switch {
	case v >= 1000 && math.Mod(v, 1000) == 0:
		return fmt.Sprintf("%gk", v/1000)
	case v >= 1:
		return fmt.Sprintf("%g", math.Round(v*100)/100)
	default:
		return fmt.Sprintf("%g", v)
	}
}

func drawPanel(b *strings.Builder, x0, y0 float64, p panel) {
	var xs, ys []float64
	for _, s := range p.lines {
		for _, pt := range s.pts {
			xs, ys = append(xs, pt.x), append(ys, pt.y)
		}
	}
	xa := newAxis(xs, x0+padL, x0+panelW-padR, true)
	ya := newAxis(ys, y0+panelH-padB, y0+padT, false)
	fmt.Fprintf(b, `<text x="%.0f" y="%.0f" font-size="12" text-anchor="middle">%s</text>`+"\n", x0+panelW/2, y0+18, html.EscapeString(p.title))
	fmt.Fprintf(b, `<text transform="translate(%.0f %.0f) rotate(-90)" text-anchor="middle">%s</text>`+"\n", x0+12, (ya.from+ya.to)/2, html.EscapeString(p.yLabel))
	for _, t := range ya.ticks() {
		y := ya.px(t)
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e9ecef"/><text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n",
			xa.from, y, xa.to, y, xa.from-4, y+4, label(t))
	}
	for _, t := range xa.ticks() {
		x := xa.px(t)
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e9ecef"/><text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n",
			x, ya.from, x, ya.to, x, ya.from+14, label(t))
	}
	fmt.Fprintf(b, `<text x="%.0f" y="%.0f" text-anchor="middle">Services (N)</text>`+"\n", (xa.from+xa.to)/2, ya.from+28)
	fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#868e96"/>`+"\n", xa.from, ya.to, xa.to-xa.from, ya.from-ya.to)
	for i, s := range p.lines {
		color := palette[i%len(palette)]
		var pts []string
		for _, pt := range s.pts {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", xa.px(pt.x), ya.px(pt.y)))
		}
		fmt.Fprintf(b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", color, strings.Join(pts, " "))
		for _, pt := range s.pts {
			fmt.Fprintf(b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"><title>%s N=%g: %g</title></circle>`+"\n",
				xa.px(pt.x), ya.px(pt.y), color, html.EscapeString(s.name), pt.x, pt.y)
		}
		lx := x0 + padL + float64(i%2)*190
		ly := ya.from + 44 + float64(i/2)*14
		fmt.Fprintf(b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="%s" stroke-width="2"/><text x="%.0f" y="%.0f">%s</text>`+"\n",
			lx, ly-4, lx+18, ly-4, color, lx+22, ly, html.EscapeString(s.name))
	}
}
