package bench

import (
	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// workerInterval is what a worker finished since the last
// Runner.Interval (guarded by the worker's mu).
type workerInterval struct {
	hist   *hdrhistogram.Histogram
	ok     int64
	failed int64
}

func (i *workerInterval) reset() {
	i.hist.Reset()
	i.ok, i.failed = 0, 0
}

// Interval is what a run finished between two calls of Runner.Interval:
// a long run's figures over time (a soak samples every 30 s).
type Interval struct {
	OK     int64 // successes: acknowledged requests or ops
	Failed int64 // errors and refusals
	// Latency of the requests that answered, in µs, as a histogram so
	// that intervals merge into the percentiles of a longer window.
	Latency *hdrhistogram.Histogram
}

// Interval returns what was measured since the previous call (or since
// measuring began) and starts the next interval. It is safe to call
// while Run runs; before measuring begins it returns an empty interval.
func (r *Runner) Interval() Interval {
	out := Interval{Latency: newHist()}
	if !r.measured.Load() {
		return out
	}
	for _, w := range r.workers {
		w.mu.Lock()
		out.Latency.Merge(w.interval.hist)
		out.OK += w.interval.ok
		out.Failed += w.interval.failed
		w.interval.reset()
		w.mu.Unlock()
	}
	return out
}

// NewLatencyHistogram returns an empty histogram with the range and
// precision of Interval.Latency, to merge intervals into.
func NewLatencyHistogram() *hdrhistogram.Histogram { return newHist() }

// Measuring reports whether the run has finished its setup and warmup
// and is measuring.
func (r *Runner) Measuring() bool { return r.measured.Load() }

// DocIDs returns the documents a docs scenario set up (empty before its
// setup has finished; call it once Run has begun measuring).
func (r *Runner) DocIDs() []string {
	if !r.measured.Load() {
		return nil
	}
	return r.docIDs
}

// CloseIdleConnections closes the connections the run's workers keep
// open once Run has returned, so that a target's descriptors come back
// at once (a soak's baseline), not when each idles out.
func (r *Runner) CloseIdleConnections() {
	if !r.measured.Load() {
		return
	}
	for _, w := range r.workers {
		if w.client != nil {
			w.client.CloseIdleConnections()
		}
	}
}
