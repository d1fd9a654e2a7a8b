package main

import (
	"fmt"
	"html"
	"math"
	"os"
	"slices"
	"strings"
)

// The report's chart (docs/BENCHMARKS.svg), hand-made SVG: one
// horizontal bar per load row that has a floor, its length the row's
// ratio to that floor, and the row's target as a dark mark across it
// where the row has one (an absolute target, such as creates per second,
// is drawn at target / floor of the same run). A bar is green when it
// reaches its mark, red when it falls short, grey without a target. The
// output depends on the figures alone (no time, no map order), so the
// same run writes the same bytes.

// bar is one row of the chart.
type bar struct {
	Label  string
	Ratio  float64 // the row's throughput / its floor's
	Target float64 // the target on the same scale; 0: none
}

const (
	chartWidth  = 980
	chartLabelW = 430 // the labels' column
	chartRight  = 60  // room for the value after the longest bar
	chartTop    = 64
	chartRowH   = 24
	chartBarH   = 14
	chartBottom = 56
)

// chartScale is the ratio at the right end of the axis: 1 (the floor)
// or, if a bar or a mark goes past it, the next quarter above.
func chartScale(bars []bar) float64 {
	top := 1.0
	for _, b := range bars {
		top = max(top, b.Ratio, b.Target)
	}
	return math.Ceil(top*4-1e-9) / 4
}

// barColor is green for a bar at or past its mark, red short of it,
// grey without one.
func barColor(b bar) string {
	switch {
	case b.Target <= 0:
		return "#8c8c8c"
	case b.Ratio >= b.Target:
		return "#2ca02c"
	default:
		return "#d62728"
	}
}

// chartSVG draws bars under title.
func chartSVG(title, subtitle string, bars []bar) []byte {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	plotW := float64(chartWidth - chartLabelW - chartRight)
	height := chartTop + chartRowH*len(bars) + chartBottom
	top := chartScale(bars)
	x := func(ratio float64) float64 { return float64(chartLabelW) + plotW*max(0, ratio)/top }
	w(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n",
		chartWidth, height, chartWidth, height)
	w(`<rect width="%d" height="%d" fill="#ffffff"/>`+"\n", chartWidth, height)
	w(`<text x="12" y="24" font-size="16" font-weight="bold">%s</text>`+"\n", html.EscapeString(title))
	w(`<text x="12" y="44" fill="#555555">%s</text>`+"\n", html.EscapeString(subtitle))
	plotBottom := chartTop + chartRowH*len(bars)
	// The grid: a line every quarter, the floor (1.0) darker.
	for q := 0; float64(q) <= top*4+1e-9; q++ {
		r := float64(q) / 4
		stroke, label := "#e0e0e0", fmt.Sprintf("%.2f", r)
		if q == 4 {
			stroke, label = "#444444", "1.00 = floor"
		}
		w(`<line class="grid" x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s"/>`+"\n", x(r), chartTop-6, x(r), plotBottom, stroke)
		w(`<text x="%.1f" y="%d" text-anchor="middle" fill="#555555">%s</text>`+"\n", x(r), plotBottom+16, label)
	}
	for i, bb := range bars {
		y := chartTop + chartRowH*i
		mid := y + chartRowH/2
		w(`<text x="%d" y="%d" text-anchor="end" dominant-baseline="middle">%s</text>`+"\n", chartLabelW-8, mid, html.EscapeString(bb.Label))
		by := mid - chartBarH/2
		w(`<rect class="bar" x="%d" y="%d" width="%.1f" height="%d" fill="%s"><title>%s: %.2f × floor</title></rect>`+"\n",
			chartLabelW, by, x(bb.Ratio)-float64(chartLabelW), chartBarH, barColor(bb), html.EscapeString(bb.Label), bb.Ratio)
		// The value after the bar, or after the mark where the mark
		// would cross it.
		tx := x(bb.Ratio) + 4
		if mx := x(bb.Target); bb.Target > 0 && mx >= tx-2 && mx < tx+34 {
			tx = mx + 5
		}
		w(`<text x="%.1f" y="%d" dominant-baseline="middle">%.2f</text>`+"\n", tx, mid, bb.Ratio)
		if bb.Target > 0 {
			w(`<line class="target" x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#000000" stroke-width="3"><title>target %.2f × floor</title></line>`+"\n",
				x(bb.Target), by-4, x(bb.Target), by+chartBarH+4, bb.Target)
		}
	}
	ly := plotBottom + 38
	w(`<rect x="%d" y="%d" width="12" height="12" fill="#2ca02c"/><text x="%d" y="%d">target met</text>`+"\n", chartLabelW, ly-10, chartLabelW+16, ly)
	w(`<rect x="%d" y="%d" width="12" height="12" fill="#d62728"/><text x="%d" y="%d">target missed</text>`+"\n", chartLabelW+110, ly-10, chartLabelW+126, ly)
	w(`<rect x="%d" y="%d" width="12" height="12" fill="#8c8c8c"/><text x="%d" y="%d">no target</text>`+"\n", chartLabelW+235, ly-10, chartLabelW+251, ly)
	w(`<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#000000" stroke-width="3"/><text x="%d" y="%d">target</text>`+"\n",
		chartLabelW+340, ly-12, chartLabelW+340, ly+2, chartLabelW+348, ly)
	w("</svg>\n")
	return []byte(b.String())
}

// chartBars are the bars of the load rows that have a floor (the
// WebSocket rows have none), in the report's order, the secure rows
// after them.
func chartBars(runs []*run, secure *secureRuns) []bar {
	all := slices.Concat(runs, secure.rows())
	var bars []bar
	for _, r := range all {
		if r.res == nil || r.res.Floor == nil || r.res.Floor.ThroughputRPS <= 0 {
			continue
		}
		bb := bar{Label: r.chartLabel(), Ratio: r.res.FloorRatio, Target: r.targetRatio}
		if r.targetRPS > 0 {
			bb.Target = r.targetRPS / r.res.Floor.ThroughputRPS
		}
		bars = append(bars, bb)
	}
	return bars
}

// chartLabel is the row's label in the chart: its short one, or the
// report's without its parenthesised asides.
func (r *run) chartLabel() string {
	if r.short != "" {
		return r.short
	}
	return stripAsides(r.label)
}

// stripAsides removes each " (…)" from a label, nested ones with it.
func stripAsides(label string) string {
	var b strings.Builder
	depth := 0
	for i := 0; i < len(label); i++ {
		switch c := label[i]; {
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case depth == 0:
			b.WriteByte(c)
		}
	}
	return strings.Join(strings.Fields(strings.ReplaceAll(b.String(), " ,", ",")), " ")
}

// writeChart writes the chart of the load rows to path.
func writeChart(path string, runs []*run, secure *secureRuns, when string) error {
	svg := chartSVG("troupe: throughput / floor, each load row (bar) and its target (mark)",
		"Written by make bench on "+when+"; the floor is a bare fasthttp server, same client and connections, same run", chartBars(runs, secure))
	return os.WriteFile(path, svg, 0o644)
}
