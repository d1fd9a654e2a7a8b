package auth

import (
	"testing"
	"time"
	"unsafe"

	"github.com/troupe-db/troupe/storage"
)

// TestVerifyKeepsNoReferenceToRaw: a token verified where it lies in a
// buffer the caller then reuses (a request's header) is remembered by a
// copy: the reused buffer's new bytes are not taken for the token, and
// the token still verifies from its memory.
func TestVerifyKeepsNoReferenceToRaw(t *testing.T) {
	auth := testAuth(t)
	now := tokenT0.Add(time.Minute)
	tm := NewTokens(func() *storage.AuthState { return auth }, 15*time.Minute, DefaultLeeway, func() time.Time { return now })
	tok, err := tm.Issue(testUser(), "fam")
	if err != nil {
		t.Fatal(err)
	}
	buf := []byte(tok)
	view := unsafe.String(unsafe.SliceData(buf), len(buf))
	if c, err := tm.Verify(view); err != nil || c.SID != "fam" {
		t.Fatalf("verify: %v", err)
	}
	// The buffer is reused: a byte of the signature changes.
	buf[len(buf)-10] ^= 1
	if _, err := tm.Verify(view); err == nil {
		t.Fatal("a changed signature verified: the memory kept the caller's buffer")
	}
	if c, err := tm.Verify(tok); err != nil || c.SID != "fam" {
		t.Fatalf("the token as issued: %v", err)
	}
	if n := testing.AllocsPerRun(100, func() {
		if _, err := tm.Verify(tok); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("a remembered token: %v allocations", n)
	}
}
