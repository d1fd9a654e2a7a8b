package cluster

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/troupe-db/troupe/cluster/clustertest"
)

// Every test stops its node and server; no goroutine may outlive them.
func TestMain(m *testing.M) {
	// fasthttp's connection cleaner (read-index calls of followers) ends
	// only when its sleep does; a batch settler may wait for good on a
	// future raft dropped at shutdown (clustertest.StrandedSettler).
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"),
		goleak.IgnoreAnyFunction(clustertest.StrandedSettler))
}
