package main

import (
	"os"
	"strconv"
	"strings"
)

// cpuTimes is the machine's CPU time so far, in clock ticks: all of it,
// and the part the hypervisor gave to other machines (steal), from the
// first line of /proc/stat.
type cpuTimes struct{ total, steal uint64 }

// readCPU reads /proc/stat; false where there is none.
func readCPU() (cpuTimes, bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}, false
	}
	return parseCPU(string(b))
}

// parseCPU reads the aggregate "cpu" line: user nice system idle iowait
// irq softirq steal (guest time is counted in user already).
func parseCPU(stat string) (cpuTimes, bool) {
	line, _, _ := strings.Cut(stat, "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return cpuTimes{}, false
	}
	var t cpuTimes
	for i, s := range f[1:9] {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return cpuTimes{}, false
		}
		t.total += v
		if i == 7 {
			t.steal = v
		}
	}
	return t, true
}

// stolen is the share of the machine's CPU time taken by the hypervisor
// between a and b, or -1 if unknown.
func stolen(a, b cpuTimes, okA, okB bool) float64 {
	if !okA || !okB || b.total <= a.total {
		return -1
	}
	return float64(b.steal-a.steal) / float64(b.total-a.total)
}
