package auth

import (
	"errors"
	"testing"
	"time"

	"github.com/troupe-db/troupe/replica"
	"github.com/troupe-db/troupe/storage"
)

var cheap = storage.Argon2Params{MemoryKiB: 64, Time: 1, Threads: 1, KeyLen: 32, SaltLen: 16}

func TestHasher(t *testing.T) {
	h := NewHasher(cheap, 2)
	deadline := time.Now().Add(5 * time.Second)
	phc, err := h.Hash("correct horse", deadline)
	if err != nil {
		t.Fatal(err)
	}
	again, err := h.Hash("correct horse", deadline)
	if err != nil || again == phc {
		t.Fatalf("two hashes of one password: %q and %q (%v): the salt must differ", phc, again, err)
	}
	for pw, want := range map[string]bool{"correct horse": true, "wrong horse": false, "": false} {
		if ok, err := h.Verify(pw, phc, deadline); err != nil || ok != want {
			t.Errorf("Verify(%q) = %v, %v; want %v", pw, ok, err, want)
		}
	}
	if ok, err := h.Verify("x", "not a hash", deadline); ok || !errors.Is(err, ErrStoredHash) {
		t.Errorf("a stored hash that does not parse: %v, %v; want false, ErrStoredHash", ok, err)
	}
	d := h.Dummy()
	if d != h.Dummy() {
		t.Error("the dummy hash changes")
	}
	if _, err := storage.ParsePHC(d); err != nil {
		t.Errorf("the dummy hash does not parse: %v", err)
	}
}

// TestHasherSlots: with every slot taken, hashing waits until its
// deadline and fails with replica.ErrTimeout.
func TestHasherSlots(t *testing.T) {
	h := NewHasher(cheap, 1)
	if err := h.acquire(time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Hash("pw", time.Now().Add(20*time.Millisecond)); !errors.Is(err, replica.ErrTimeout) {
		t.Fatalf("Hash with no free slot: %v, want ErrTimeout", err)
	}
	if _, err := h.Verify("pw", "x", time.Now().Add(20*time.Millisecond)); !errors.Is(err, replica.ErrTimeout) {
		t.Fatalf("Verify with no free slot: %v, want ErrTimeout", err)
	}
	h.release()
	if _, err := h.Hash("pw", time.Now().Add(5*time.Second)); err != nil {
		t.Fatalf("after the slot is released: %v", err)
	}
}
