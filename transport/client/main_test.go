package client

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test closes its clients, servers and nodes; no goroutine may
// outlive them. Two of fasthttp's server goroutines are exempt, as in
// transport's tests: the process-wide Date header ticker, and the
// worker-pool cleaner, which sees the stop only when its sleep ends.
// The clients' own connection cleaners end within IdleConnTimeout of
// Close, which the tests keep short.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
	)
}
