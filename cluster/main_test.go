package cluster

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test stops its node and server; no goroutine may outlive them.
func TestMain(m *testing.M) {
	// fasthttp's connection cleaner (read-index calls of followers) ends
	// only when its sleep does.
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"))
}
