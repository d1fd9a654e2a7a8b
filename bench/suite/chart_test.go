package main

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"strings"
	"testing"
)

// svgCount parses svg as XML (failing the test if it is not) and counts
// the elements of each class.
func svgCount(t *testing.T, svg []byte) map[string]int {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(svg))
	count := map[string]int{}
	depth := 0
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("not XML: %v\n%s", err, svg)
		}
		switch e := tok.(type) {
		case xml.StartElement:
			if depth == 0 && e.Name.Local != "svg" {
				t.Fatalf("root element %s", e.Name.Local)
			}
			depth++
			for _, a := range e.Attr {
				if a.Name.Local == "class" {
					count[e.Name.Local+"."+a.Value]++
				}
			}
		case xml.EndElement:
			depth--
		}
	}
	if depth != 0 {
		t.Fatalf("unbalanced elements")
	}
	return count
}

func TestChartSVG(t *testing.T) {
	bars := []bar{
		{Label: "users-create, 64 connections", Ratio: 0.42, Target: 0.63},
		{Label: "users-get <linearizable> & more", Ratio: 0.78, Target: 0.70},
		{Label: "users-mixed", Ratio: 0.74},
		{Label: "ratelimit-grpc", Ratio: 1.3, Target: 1.1},
	}
	svg := chartSVG("a chart", "on a day", bars)
	count := svgCount(t, svg)
	if count["rect.bar"] != 4 || count["line.target"] != 3 {
		t.Fatalf("%v", count)
	}
	// A ratio past the floor stretches the axis to the next quarter.
	if chartScale(bars) != 1.5 || count["line.grid"] != 7 {
		t.Fatalf("scale %v, %d grid lines", chartScale(bars), count["line.grid"])
	}
	if !strings.Contains(string(svg), "users-get &lt;linearizable&gt; &amp; more") {
		t.Fatal("a label was not escaped")
	}
	// Met, missed and no target have their colours.
	for _, c := range []struct {
		b    bar
		want string
	}{{bars[0], "#d62728"}, {bars[1], "#2ca02c"}, {bars[2], "#8c8c8c"}} {
		if got := barColor(c.b); got != c.want {
			t.Fatalf("%s: colour %s, want %s", c.b.Label, got, c.want)
		}
	}
	if !bytes.Equal(svg, chartSVG("a chart", "on a day", bars)) {
		t.Fatal("the same figures drew a different chart")
	}
	if n := svgCount(t, chartSVG("empty", "", nil)); n["rect.bar"] != 0 {
		t.Fatalf("%v", n)
	}
}

// The chart has a bar for each row with a floor, the WebSocket rows
// left out, and marks where a target is known: a ratio as it is, a
// throughput divided by the row's floor.
func TestChartBars(t *testing.T) {
	row := func(label string, rps, floor float64) *run {
		r := &run{label: label, res: &result{ThroughputRPS: rps}}
		if floor > 0 {
			r.res.Floor = &result{ThroughputRPS: floor}
			r.res.FloorRatio = rps / floor
		}
		return r
	}
	creates := row("users-create, 64 connections", 20000, 50000)
	creates.targetRPS = 34000
	gets := row("users-get (linearizable), 64 connections", 40000, 50000)
	gets.targetRatio = 0.7
	ws := row("docs-ws, 64 clients on 1 document (WebSocket)", 7000, 0)
	sec := &secureRuns{creates: row("users-create, secure default (0 refused)", 18000, 50000), gets: row("users-get, secure default", 39000, 52000)}
	sec.gets.targetRatio = 0.75
	bars := chartBars([]*run{creates, gets, ws}, sec)
	if len(bars) != 4 {
		t.Fatalf("%d bars: %+v", len(bars), bars)
	}
	if bars[0].Target != 0.68 || bars[0].Ratio != 0.4 || bars[1].Target != 0.7 || bars[2].Target != 0 || bars[3].Target != 0.75 {
		t.Fatalf("%+v", bars)
	}
	if bars[2].Label != "users-create, secure default" {
		t.Fatalf("label %q", bars[2].Label)
	}
	if p := chartPath("docs/BENCHMARKS.md"); p != "docs/BENCHMARKS.svg" {
		t.Fatal(p)
	}
}

func TestStripAsides(t *testing.T) {
	for in, want := range map[string]string{
		"ratelimit-batch (10 checks per request, all or nothing), 64 connections": "ratelimit-batch, 64 connections",
		"docs-ops, 64 clients on 1 document (HTTP)":                               "docs-ops, 64 clients on 1 document",
		"users-create, 64 connections":                                            "users-create, 64 connections",
		"a (b (c) d) e":                                                           "a e",
	} {
		if got := stripAsides(in); got != want {
			t.Errorf("stripAsides(%q) = %q, want %q", in, got, want)
		}
	}
}
