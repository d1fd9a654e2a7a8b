package main

import (
	"strings"
	"testing"
)

func TestBenchNs(t *testing.T) {
	out := "pkg: x\nBenchmarkActorRoundTrip/serial-2         \t 1896124\t       630.8 ns/op\t      15 B/op\t       0 allocs/op\n" +
		"BenchmarkActorRoundTrip/parallel-2 \t 1295881\t 804.4 ns/op\n"
	if v, ok := benchNs(out, "BenchmarkActorRoundTrip/serial"); !ok || v != 630.8 {
		t.Fatalf("got %v %v", v, ok)
	}
	if _, ok := benchNs(out, "BenchmarkActorRoundTrip/none"); ok {
		t.Fatal("found a benchmark that is not there")
	}
}

func TestBenchMetric(t *testing.T) {
	out := "pkg: github.com/troupe-db/troupe/actors\n" +
		"BenchmarkIdleDocMemory-2   \t       1\t1114155357 ns/op\t       797.4 B/doc\n" +
		"BenchmarkIdleDocMemoryX-2  \t       1\t 5 ns/op\t 1.5 B/doc\n"
	if v, ok := benchMetric(out, "BenchmarkIdleDocMemory", "B/doc"); !ok || v != 797.4 {
		t.Fatalf("got %v %v", v, ok)
	}
	if v, ok := benchMetric(out, "BenchmarkIdleDocMemory", "ns/op"); !ok || v != 1114155357 {
		t.Fatalf("got %v %v", v, ok)
	}
	if _, ok := benchMetric(out, "BenchmarkIdleDocMemory", "allocs/op"); ok {
		t.Fatal("found a unit the benchmark did not report")
	}
}

func TestFindMetric(t *testing.T) {
	text := "# HELP x\ngo_memstats_heap_alloc_bytes_total 1\ngo_memstats_heap_alloc_bytes 2.5e+08\n" +
		`troupe_watch_history_bytes{node="a"} 7` + "\ntroupe_watch_history_bytes 22013745\n"
	if v, err := findMetric(strings.NewReader(text), "go_memstats_heap_alloc_bytes"); err != nil || v != 2.5e8 {
		t.Fatalf("%v %v", v, err)
	}
	if v, err := findMetric(strings.NewReader(text), "troupe_watch_history_bytes"); err != nil || v != 22013745 {
		t.Fatalf("%v %v", v, err)
	}
	if _, err := findMetric(strings.NewReader(text), "troupe_missing"); err == nil {
		t.Fatal("found a metric that is not there")
	}
}
