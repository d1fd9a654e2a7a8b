package peer

import (
	"testing"
	"time"
)

// TestBatcherPacksWhileBusy: while its one request is in flight, the
// items queued for an address wait and then go together, up to MaxItems.
func TestBatcherPacksWhileBusy(t *testing.T) {
	batches := make(chan []int, 16)
	release := make(chan struct{})
	b := &Batcher[int]{MaxItems: 3, MaxBytes: 1 << 20, InFlight: 1,
		Size: func(int) int { return 1 },
		Send: func(addr string, batch []int) {
			if addr != "n2" {
				t.Errorf("sent to %q", addr)
			}
			batches <- batch
			<-release
		}}
	defer b.Close()
	q, ok := b.Queue("n2")
	if !ok {
		t.Fatal("no queue")
	}
	q <- 1
	first := receive(t, batches)
	if len(first) != 1 || first[0] != 1 {
		t.Fatalf("first batch %v, want [1]", first)
	}
	// The only slot is busy: these wait and go as batches of at most 3.
	for i := 2; i <= 5; i++ {
		q <- i
	}
	close(release)
	var got []int
	for len(got) < 4 {
		batch := receive(t, batches)
		if len(batch) > 3 {
			t.Fatalf("batch %v over MaxItems", batch)
		}
		got = append(got, batch...)
	}
	for i, v := range got {
		if v != i+2 {
			t.Fatalf("items in order %v, want 2..5", got)
		}
	}
	if len(first)+len(got) != 5 {
		t.Fatalf("sent %d items, want 5", len(first)+len(got))
	}
}

func TestBatcherRefusesAfterClose(t *testing.T) {
	b := &Batcher[int]{MaxItems: 1, MaxBytes: 1, InFlight: 1, Size: func(int) int { return 1 }, Send: func(string, []int) {}}
	b.Close()
	if _, ok := b.Queue("n2"); ok {
		t.Fatal("a closed batcher gave a queue")
	}
}

func receive(t *testing.T, batches <-chan []int) []int {
	t.Helper()
	select {
	case b := <-batches:
		return b
	case <-time.After(5 * time.Second):
		t.Fatal("no batch within 5s")
		return nil
	}
}
