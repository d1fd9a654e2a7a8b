package main

import (
	"bufio"
	"fmt"
	"html"
	"io"
	"math"
	"strings"
)

// The chart of a soak, hand-made SVG: panels stacked over one time axis
// (throughput, p99, memory), each with its own y axis from zero, a
// legend on the right, and the kills drawn as dashed verticals through
// every panel, so that a reader sees at a glance whether anything climbs
// and what a kill did.

type point struct{ X, Y float64 } // Y NaN: no value (a gap in the line)

type series struct {
	Name   string
	Color  string
	Dashed bool
	Points []point
}

type panel struct {
	Title  string
	Format func(float64) string // a y tick's label
	Series []series
}

type marker struct {
	X     float64
	Label string
}

type chart struct {
	Title   string
	XMax    float64 // the axis runs from 0 to XMax
	XLabel  string
	Markers []marker
	Panels  []panel
}

const (
	svgWidth    = 960
	svgLeft     = 78
	svgRight    = 215 // legend
	svgTop      = 44
	panelHeight = 170
	panelGap    = 56
)

// palette is the series colours, in order, distinguishable in print.
var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf"}

// niceCeil is the smallest of 1, 2, 2.5, 5 × 10^k at or above v (v > 0).
func niceCeil(v float64) float64 {
	if v <= 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return 1
	}
	exp := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*exp >= v*(1-1e-12) {
			return m * exp
		}
	}
	return 10 * exp
}

// ticks divides [0, top] into four or five steps of a nice size and
// returns the axis maximum and the step.
func ticks(maxVal float64) (top, step float64) {
	step = niceCeil(maxVal / 4)
	top = step * math.Ceil(maxVal/step-1e-9)
	if top <= 0 {
		top = step
	}
	return top, step
}

func (c chart) height() int {
	return svgTop + len(c.Panels)*(panelHeight+panelGap) + 10
}

// writeSVG renders the chart.
func (c chart) writeSVG(w io.Writer) error {
	bw := bufio.NewWriter(w)
	plotW := float64(svgWidth - svgLeft - svgRight)
	xMax := c.XMax
	if xMax <= 0 {
		xMax = 1
	}
	xOf := func(x float64) float64 { return svgLeft + x/xMax*plotW }
	fmt.Fprintf(bw, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n",
		svgWidth, c.height(), svgWidth, c.height())
	fmt.Fprintf(bw, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(bw, `<text x="%d" y="22" font-size="15" font-weight="bold">%s</text>`+"\n", svgLeft, esc(c.Title))
	_, xStep := ticks(xMax)
	for i, p := range c.Panels {
		top := svgTop + i*(panelHeight+panelGap) + 18
		bottom := float64(top + panelHeight)
		maxY := 0.0
		for _, s := range p.Series {
			for _, pt := range s.Points {
				if !math.IsNaN(pt.Y) && !math.IsInf(pt.Y, 0) {
					maxY = max(maxY, pt.Y)
				}
			}
		}
		yTop, yStep := ticks(maxY)
		yOf := func(y float64) float64 { return bottom - y/yTop*panelHeight }
		format := p.Format
		if format == nil {
			format = func(v float64) string { return fmt.Sprintf("%g", v) }
		}
		fmt.Fprintf(bw, `<g class="panel"><text x="%d" y="%d" font-weight="bold">%s</text>`+"\n", svgLeft, top-6, esc(p.Title))
		// Grid and y ticks.
		for y := 0.0; y <= yTop*(1+1e-9); y += yStep {
			fmt.Fprintf(bw, `<line x1="%d" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e4e4e4"/>`, svgLeft, yOf(y), svgLeft+plotW, yOf(y))
			fmt.Fprintf(bw, `<text x="%d" y="%.1f" text-anchor="end" fill="#555">%s</text>`+"\n", svgLeft-6, yOf(y)+4, esc(format(y)))
		}
		// X ticks.
		for x := 0.0; x <= xMax*(1+1e-9); x += xStep {
			fmt.Fprintf(bw, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#999"/>`, xOf(x), bottom, xOf(x), bottom+4)
			fmt.Fprintf(bw, `<text x="%.1f" y="%.1f" text-anchor="middle" fill="#555">%s</text>`+"\n", xOf(x), bottom+17, esc(fmt.Sprintf("%g", x)))
		}
		fmt.Fprintf(bw, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="none" stroke="#999"/>`+"\n", svgLeft, top, plotW, panelHeight)
		for _, m := range c.Markers {
			fmt.Fprintf(bw, `<line class="marker" x1="%.1f" y1="%d" x2="%.1f" y2="%.1f" stroke="#888" stroke-dasharray="4 3"/>`+"\n", xOf(m.X), top, xOf(m.X), bottom)
			if i == 0 {
				fmt.Fprintf(bw, `<text x="%.1f" y="%d" text-anchor="middle" font-size="10" fill="#666">%s</text>`+"\n", xOf(m.X), top+11, esc(m.Label))
			}
		}
		for j, s := range p.Series {
			if d := pathData(s.Points, xOf, yOf); d != "" {
				dash := ""
				if s.Dashed {
					dash = ` stroke-dasharray="6 3"`
				}
				fmt.Fprintf(bw, `<path class="series" d="%s" fill="none" stroke="%s" stroke-width="1.8"%s/>`+"\n", d, esc(s.Color), dash)
			}
			ly := float64(top + 12 + j*18)
			lx := svgLeft + plotW + 14
			fmt.Fprintf(bw, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2.5"/>`, lx, ly-4, lx+18, ly-4, esc(s.Color))
			fmt.Fprintf(bw, `<text x="%.1f" y="%.1f">%s</text>`+"\n", lx+24, ly, esc(s.Name))
		}
		fmt.Fprintln(bw, `</g>`)
	}
	last := svgTop + len(c.Panels)*(panelHeight+panelGap) - panelGap + 18 + 34
	fmt.Fprintf(bw, `<text x="%.1f" y="%d" text-anchor="middle" fill="#333">%s</text>`+"\n", svgLeft+plotW/2, last, esc(c.XLabel))
	fmt.Fprintln(bw, `</svg>`)
	return bw.Flush()
}

// pathData draws points as one path, broken where Y is NaN.
func pathData(pts []point, xOf, yOf func(float64) float64) string {
	var b strings.Builder
	pen := false
	for _, p := range pts {
		if math.IsNaN(p.Y) || math.IsInf(p.Y, 0) || math.IsNaN(p.X) {
			pen = false
			continue
		}
		cmd := "L"
		if !pen {
			cmd = "M"
			if b.Len() > 0 {
				b.WriteByte(' ')
			}
		} else {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s%.1f %.1f", cmd, xOf(p.X), yOf(p.Y))
		pen = true
	}
	return b.String()
}

func esc(s string) string { return html.EscapeString(s) }
