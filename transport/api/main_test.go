package api

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test stops its node and server; no goroutine may outlive them.
// Two of fasthttp's own are exempt: the process-wide Date header ticker,
// and the worker-pool cleaner, which sees the stop only when its sleep
// (MaxIdleWorkerDuration) ends; likewise the idle-connection cleaner of
// the node-to-node clients (forwarding), which ends after its sleep
// (MaxIdleConnDuration).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"),
	)
}
