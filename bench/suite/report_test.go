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
