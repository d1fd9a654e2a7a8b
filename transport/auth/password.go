package auth

import (
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/troupe-db/troupe/replica"
	"github.com/troupe-db/troupe/storage"
)

// ErrStoredHash: a stored password hash does not parse (it never
// matches).
var ErrStoredHash = errors.New("stored password hash does not parse")

// Hasher derives and checks argon2id password hashes on this node, at
// most a fixed number at once: each costs Argon2Params.MemoryKiB, and a
// verification costs what hashing costs. It is safe for concurrent use.
type Hasher struct {
	params storage.Argon2Params
	slots  chan struct{}

	dummyOnce sync.Once
	dummy     string
}

// NewHasher returns a hasher with params that runs at most concurrency
// hashes at once.
func NewHasher(params storage.Argon2Params, concurrency int) *Hasher {
	return &Hasher{params: params, slots: make(chan struct{}, concurrency)}
}

// acquire takes a hashing slot, or fails with replica.ErrTimeout at
// deadline; the caller must release it.
func (h *Hasher) acquire(deadline time.Time) error {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case h.slots <- struct{}{}:
		return nil
	case <-t.C:
		return replica.ErrTimeout
	}
}

func (h *Hasher) release() { <-h.slots }

// Hash derives a hash of password with a fresh salt (before proposing:
// the hash travels in the command, so every node applies the same).
func (h *Hasher) Hash(password string, deadline time.Time) (string, error) {
	if err := h.acquire(deadline); err != nil {
		return "", err
	}
	defer h.release()
	salt := make([]byte, h.params.SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	return storage.HashPassword(password, salt, h.params), nil
}

// Verify checks a password against a PHC hash. A hash that does not
// parse never matches: false with ErrStoredHash.
func (h *Hasher) Verify(password, phc string, deadline time.Time) (bool, error) {
	if err := h.acquire(deadline); err != nil {
		return false, err
	}
	defer h.release()
	ok, err := storage.VerifyPassword(password, phc)
	if err != nil {
		return false, fmt.Errorf("%w: %v", ErrStoredHash, err)
	}
	return ok, nil
}

// Dummy is a hash with this hasher's parameters of a password nobody
// has: logins for unknown emails verify against it, so they take as long
// as logins with a wrong password.
func (h *Hasher) Dummy() string {
	h.dummyOnce.Do(func() {
		salt := make([]byte, h.params.SaltLen)
		_, _ = rand.Read(salt)
		pw := make([]byte, 24)
		_, _ = rand.Read(pw)
		h.dummy = storage.HashPassword(string(pw), salt, h.params)
	})
	return h.dummy
}
