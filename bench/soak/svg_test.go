package main

import (
	"bytes"
	"encoding/xml"
	"io"
	"math"
	"strings"
	"testing"
)

func TestNiceCeilAndTicks(t *testing.T) {
	for _, c := range []struct{ in, want float64 }{
		{0.7, 1}, {1, 1}, {1.2, 2}, {2.2, 2.5}, {3, 5}, {7, 10}, {120, 200}, {0.013, 0.02}, {0, 1}, {-5, 1}, {math.NaN(), 1},
	} {
		if got := niceCeil(c.in); math.Abs(got-c.want) > 1e-9*c.want {
			t.Errorf("niceCeil(%v) = %v, want %v", c.in, got, c.want)
		}
	}
	for _, v := range []float64{0, 1, 3.3, 97, 4211, 1e6} {
		top, step := ticks(v)
		if top < v || step <= 0 || top/step > 5.0001 || top/step < 1 {
			t.Errorf("ticks(%v) = %v, %v", v, top, step)
		}
	}
}

// parse checks that the chart is well-formed XML and counts elements by
// name and class.
func parse(t *testing.T, b []byte) map[string]int {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(b))
	d.Strict = true
	counts := map[string]int{}
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return counts
		}
		if err != nil {
			t.Fatalf("not well-formed: %v\n%s", err, b)
		}
		if se, ok := tok.(xml.StartElement); ok {
			counts[se.Name.Local]++
			for _, a := range se.Attr {
				if a.Name.Local == "class" {
					counts[se.Name.Local+"."+a.Value]++
				}
			}
		}
	}
}

func TestChartSVG(t *testing.T) {
	c := chart{
		Title: `soak <3m> & "friends"`, XMax: 3, XLabel: "minutes",
		Markers: []marker{{X: 0.75, Label: "kill n2"}, {X: 1.5, Label: "kill n3"}},
		Panels: []panel{
			{Title: "throughput", Series: []series{
				{Name: "writes", Color: "#1f77b4", Points: []point{{0.5, 100}, {1, 120}, {1.5, 90}}},
				{Name: "reads", Color: "#d62728", Points: []point{{0.5, 400}, {1, math.NaN()}, {1.5, 380}, {2, 390}}},
			}},
			{Title: "memory", Series: []series{
				{Name: "n1 heap", Color: "#2ca02c", Points: nil}, // nothing to draw: legend only
				{Name: "n1 RSS", Color: "#2ca02c", Dashed: true, Points: []point{{1, 50}}},
			}},
		},
	}
	var b bytes.Buffer
	if err := c.writeSVG(&b); err != nil {
		t.Fatal(err)
	}
	n := parse(t, b.Bytes())
	if n["svg"] != 1 || n["g.panel"] != 2 {
		t.Fatalf("elements %v", n)
	}
	// Three series with points; the empty one draws no path.
	if n["path.series"] != 3 {
		t.Fatalf("%d series paths, want 3", n["path.series"])
	}
	// Each marker crosses every panel.
	if n["line.marker"] != 4 {
		t.Fatalf("%d marker lines, want 4", n["line.marker"])
	}
	s := b.String()
	if !strings.Contains(s, "soak &lt;3m&gt; &amp; &#34;friends&#34;") {
		t.Fatalf("title not escaped:\n%s", s)
	}
	// The NaN breaks the reads line in two.
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(line, `stroke="#d62728" stroke-width="1.8"`) && strings.Count(line, "M") != 2 {
			t.Fatalf("the gap did not break the line: %s", line)
		}
	}
	if !strings.Contains(s, `stroke-dasharray="6 3"`) {
		t.Fatal("the dashed series is not dashed")
	}
}

// A chart with no data at all still renders (an axis from 0 to 1).
func TestChartSVGEmpty(t *testing.T) {
	var b bytes.Buffer
	if err := (chart{Panels: []panel{{Title: "nothing"}}}).writeSVG(&b); err != nil {
		t.Fatal(err)
	}
	if n := parse(t, b.Bytes()); n["path.series"] != 0 || n["g.panel"] != 1 {
		t.Fatalf("elements %v", n)
	}
}

func TestPathData(t *testing.T) {
	id := func(v float64) float64 { return v }
	got := pathData([]point{{1, 2}, {2, math.NaN()}, {3, 4}, {4, 5}, {5, math.Inf(1)}}, id, id)
	if want := "M1.0 2.0 M3.0 4.0 L4.0 5.0"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	if got := pathData(nil, id, id); got != "" {
		t.Fatalf("no points: %q", got)
	}
}
