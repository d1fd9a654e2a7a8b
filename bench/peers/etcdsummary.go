package main

import (
	"bufio"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// etcdSummary is what etcd's benchmark tool (tools/benchmark, its
// pkg/report) prints at the end of a put or range run:
//
//	Summary:
//	  Total:	2.0311 secs.
//	  Slowest:	0.0512 secs.
//	  Fastest:	0.0003 secs.
//	  Average:	0.0071 secs.
//	  Stddev:	0.0044 secs.
//	  Requests/sec:	9012.3456
//
//	Response time histogram:
//	  …
//	Latency distribution:
//	  10% in 0.0031 secs.
//	  …
//	  99.9% in 0.0402 secs.
//
//	Error distribution:
//	  [12]	etcdserver: too many requests
//
// Times are in seconds, "%4.4f" by default or "%g" with --precise. A
// percentile whose latency rounds to 0 is left out by the tool.
type etcdSummary struct {
	TotalS, SlowestS, FastestS, AverageS, StddevS float64
	RPS                                           float64
	// Percentiles maps 50, 90, 99, 99.9 … to a latency in seconds.
	Percentiles map[float64]float64
	// Errors counts the failed requests (the error distribution).
	Errors int64
}

// pct is a percentile's latency in seconds, or -1 if the tool left it out.
func (s *etcdSummary) pct(p float64) float64 {
	if v, ok := s.Percentiles[p]; ok {
		return v
	}
	return -1
}

var errNoSummary = errors.New("no \"Summary:\" in the benchmark's output (every request failed?)")

// parseEtcdSummary reads the tool's output (progress bar and other lines
// around it are skipped).
func parseEtcdSummary(out string) (*etcdSummary, error) {
	s := &etcdSummary{Percentiles: map[float64]float64{}}
	section := ""
	seen := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch line {
		case "Summary:", "Response time histogram:", "Latency distribution:", "Error distribution:":
			section = line
			continue
		case "":
			continue
		}
		switch section {
		case "Summary:":
			name, val, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			v, err := parseSeconds(val)
			if err != nil {
				return nil, fmt.Errorf("summary line %q: %w", line, err)
			}
			switch name {
			case "Total":
				s.TotalS = v
			case "Slowest":
				s.SlowestS = v
			case "Fastest":
				s.FastestS = v
			case "Average":
				s.AverageS = v
			case "Stddev":
				s.StddevS = v
			case "Requests/sec":
				s.RPS = v
			default:
				continue
			}
			seen[name] = true
		case "Latency distribution:":
			// "99.9% in 0.0402 secs."
			p, val, ok := strings.Cut(line, "% in ")
			if !ok {
				continue
			}
			pf, err := strconv.ParseFloat(p, 64)
			if err != nil {
				return nil, fmt.Errorf("latency line %q: %w", line, err)
			}
			v, err := parseSeconds(val)
			if err != nil {
				return nil, fmt.Errorf("latency line %q: %w", line, err)
			}
			s.Percentiles[pf] = v
		case "Error distribution:":
			// "[12]	etcdserver: too many requests"
			rest, ok := strings.CutPrefix(line, "[")
			if !ok {
				continue
			}
			n, _, ok := strings.Cut(rest, "]")
			if !ok {
				continue
			}
			c, err := strconv.ParseInt(n, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("error line %q: %w", line, err)
			}
			s.Errors += c
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if !seen["Requests/sec"] || !seen["Total"] {
		if s.Errors > 0 {
			return nil, fmt.Errorf("%w: %d requests failed", errNoSummary, s.Errors)
		}
		return nil, errNoSummary
	}
	return s, nil
}

// parseSeconds reads "\t0.0031 secs." or "\t9012.3456" (whitespace and
// the unit around the number).
func parseSeconds(v string) (float64, error) {
	v = strings.TrimSpace(v)
	v = strings.TrimSuffix(v, ".")
	v = strings.TrimSuffix(v, " secs")
	return strconv.ParseFloat(strings.TrimSpace(v), 64)
}
