package cluster

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test stops its node and server; no goroutine may outlive them.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
