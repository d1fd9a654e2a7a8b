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

func TestParseCPU(t *testing.T) {
	a, ok := parseCPU("cpu  100 5 50 800 10 0 5 30 0 0\ncpu0 1 2 3\n")
	if !ok || a.total != 1000 || a.steal != 30 {
		t.Fatalf("got %+v %v", a, ok)
	}
	b, _ := parseCPU("cpu  200 5 100 1600 10 0 5 80 0 0\n")
	if s := stolen(a, b, true, true); s != 50.0/1000 {
		t.Fatalf("stolen %v", s)
	}
	if s := stolen(a, b, false, true); s != -1 {
		t.Fatalf("unknown stolen %v", s)
	}
	for _, bad := range []string{"", "intr 1 2", "cpu 1 2 3", "cpu a b c d e f g h"} {
		if _, ok := parseCPU(bad); ok {
			t.Fatalf("parsed %q", bad)
		}
	}
}
