package auth

import (
	"fmt"
	"testing"
	"time"
)

func TestFailureThrottle(t *testing.T) {
	now := time.Unix(1000, 0)
	th := NewThrottle(10, 100, func() time.Time { return now })
	for i := range 10 {
		if _, b := th.Blocked("k"); b {
			t.Fatalf("blocked after %d failures", i)
		}
		th.Fail("k")
	}
	wait, b := th.Blocked("k")
	if !b || wait != 6*time.Second {
		t.Fatalf("after 10 failures: blocked=%v wait=%v", b, wait)
	}
	if _, b := th.Blocked("other"); b {
		t.Fatal("another key is blocked")
	}
	now = now.Add(6 * time.Second)
	if _, b := th.Blocked("k"); b {
		t.Fatal("still blocked after one interval")
	}
	th.Fail("k")
	if _, b := th.Blocked("k"); !b {
		t.Fatal("one more failure did not block again")
	}
	now = now.Add(time.Minute)
	for range 10 {
		th.Fail("k")
	}
	if _, b := th.Blocked("k"); !b {
		t.Fatal("a full minute later, 10 failures did not block")
	}
}

func TestFailureThrottleIsBounded(t *testing.T) {
	now := time.Unix(1000, 0)
	th := NewThrottle(10, 100, func() time.Time { return now })
	for i := range 10_000 {
		th.Fail(fmt.Sprint("addr-", i))
		if i%1000 == 0 {
			now = now.Add(time.Second)
		}
	}
	if n := th.Len(); n > 100 {
		t.Fatalf("%d keys held, capacity 100", n)
	}
	// A key being attacked right now stays blocked while others churn.
	for range 10 {
		th.Fail("victim")
	}
	for i := range 50 {
		th.Fail(fmt.Sprint("churn-", i))
	}
	if _, b := th.Blocked("victim"); !b {
		t.Fatal("churn unblocked an attacked key")
	}
}
