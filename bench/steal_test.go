package bench

import "testing"

// TestParseCPU reads the aggregate cpu line of /proc/stat and the share
// of it stolen between two readings.
func TestParseCPU(t *testing.T) {
	a, ok := ParseCPU("cpu  100 5 50 800 10 0 5 30 0 0\ncpu0 1 2 3\n")
	if !ok || a.total != 1000 || a.steal != 30 {
		t.Fatalf("got %+v %v", a, ok)
	}
	b, _ := ParseCPU("cpu  200 5 100 1600 10 0 5 80 0 0\n")
	if s := Stolen(a, b, true, true); s != 50.0/1000 {
		t.Fatalf("stolen %v", s)
	}
	if s := Stolen(a, b, false, true); s != -1 {
		t.Fatalf("unknown stolen %v", s)
	}
	for _, bad := range []string{"", "intr 1 2", "cpu 1 2 3", "cpu a b c d e f g h"} {
		if _, ok := ParseCPU(bad); ok {
			t.Fatalf("parsed %q", bad)
		}
	}
}
