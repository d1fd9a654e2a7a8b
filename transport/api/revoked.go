package api

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/troupe-db/troupe/transport/auth"
)

// revokedTokens remembers access tokens found revoked after a read
// barrier, so that the same token sent again is refused at once instead of
// costing a round trip to the leader per request: a client that keeps
// sending a revoked token (a stale tab, a hostile script) must not make
// the node do work for it. A token is known by its user, epoch and
// session; once revoked on a node that has caught up, it stays revoked
// (sessions never reopen, epochs never go back, user ids are never
// reused). Entries are forgotten when the token expires, and the set is
// bounded: when full, the expired go, then an arbitrary half.
type revokedTokens struct {
	mu   sync.Mutex
	dead map[revokedKey]time.Time // token identity → when the token expires
	// n is len(dead), for known to skip the lock when the set is empty,
	// as it is on a node nobody sends revoked tokens to.
	n atomic.Int64
}

// maxRevokedTokens bounds the set: ~100 bytes an entry.
const maxRevokedTokens = 1 << 16

// revokedKey is a token's identity: its user, epoch and session. Its
// strings are the claims', so looking one up allocates nothing.
type revokedKey struct {
	sub, sid string
	epoch    uint64
}

func keyOf(c *auth.Claims) revokedKey {
	return revokedKey{sub: c.Subject, sid: c.SID, epoch: c.Epoch}
}

// known reports whether the token of claims was found revoked before.
func (r *revokedTokens) known(c *auth.Claims) bool {
	if r.n.Load() == 0 {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.dead[keyOf(c)]
	return ok
}

// add remembers the token of claims as revoked until it expires.
func (r *revokedTokens) add(c *auth.Claims, now time.Time) {
	exp := now.Add(time.Hour)
	if c.ExpiresAt != nil {
		exp = c.ExpiresAt.Time
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.dead == nil {
		r.dead = map[revokedKey]time.Time{}
	}
	defer func() { r.n.Store(int64(len(r.dead))) }()
	if len(r.dead) >= maxRevokedTokens {
		for k, e := range r.dead {
			if now.After(e) {
				delete(r.dead, k)
			}
		}
		for k := range r.dead {
			if len(r.dead) < maxRevokedTokens/2 {
				break
			}
			delete(r.dead, k)
		}
	}
	r.dead[keyOf(c)] = exp
}

func (r *revokedTokens) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.dead)
}
