package main

import "testing"

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
