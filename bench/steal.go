package bench

import (
	"os"
	"strconv"
	"strings"
)

// CPUTimes is the machine's CPU time so far, in clock ticks: all of it,
// and the part the hypervisor gave to other machines (steal), from the
// first line of /proc/stat.
type CPUTimes struct{ total, steal uint64 }

// ReadCPU reads /proc/stat; false where there is none.
func ReadCPU() (CPUTimes, bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return CPUTimes{}, false
	}
	return ParseCPU(string(b))
}

// ParseCPU reads the aggregate "cpu" line: user nice system idle iowait
// irq softirq steal (guest time is counted in user already).
func ParseCPU(stat string) (CPUTimes, bool) {
	line, _, _ := strings.Cut(stat, "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return CPUTimes{}, false
	}
	var t CPUTimes
	for i, s := range f[1:9] {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return CPUTimes{}, false
		}
		t.total += v
		if i == 7 {
			t.steal = v
		}
	}
	return t, true
}

// Stolen is the share of the machine's CPU time taken by the hypervisor
// between a and b, or -1 if unknown.
func Stolen(a, b CPUTimes, okA, okB bool) float64 {
	if !okA || !okB || b.total <= a.total {
		return -1
	}
	return float64(b.steal-a.steal) / float64(b.total-a.total)
}
