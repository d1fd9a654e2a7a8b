package actors

import (
	"syscall"
	"testing"
	"time"
)

// cpuClock measures the CPU time the process spends (user and system, all
// threads) over a benchmark loop. On a shared machine ns/op counts the
// time other processes hold the cores too; cpu-ns/op is what the code
// costs, and is the figure to compare between runs.
type cpuClock struct{ start time.Duration }

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func startCPU() cpuClock { return cpuClock{start: processCPU()} }

// report adds cpu-ns/op: call it after the loop, with the timer stopped
// or not (ReportMetric survives either).
func (c cpuClock) report(b *testing.B, n int) {
	if n > 0 {
		b.ReportMetric(float64(processCPU()-c.start)/float64(n), "cpu-ns/op")
	}
}
