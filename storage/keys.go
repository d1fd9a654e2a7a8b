package storage

import (
	"fmt"
	"time"
)

// AuthState is the cluster-wide authentication state: the session rules,
// the key refresh tokens are derived with, and the keys access tokens are
// signed with. It is created once, at bootstrap, by a command carrying
// secrets the leader generated, so every node holds the same keys and
// verifies every token. It is immutable: a change makes a new one.
type AuthState struct {
	Params     AuthParams
	RefreshKey []byte
	Keys       []SigningKey // oldest first; the last one signs
}

// SigningKey is one key access tokens are signed with (HMAC-SHA256).
type SigningKey struct {
	KID       string
	Secret    []byte
	CreatedMs int64
	// RetiredMs is when a newer key replaced it (0: it is current). A
	// retired key verifies only tokens issued before it was retired, and
	// is forgotten KeyRetention after that.
	RetiredMs int64
}

// Key and secret sizes, and how long a retired key is kept. Access tokens
// live at most MaxAccessTTL, so a retired key is useless after that.
const (
	SecretBytes  = 32
	MaxKIDBytes  = 64
	MaxAccessTTL = 24 * time.Hour
	KeyRetention = MaxAccessTTL + time.Hour
	KeySkew      = time.Minute
	maxKeys      = 64
)

// AuthSetup is the command that creates the AuthState.
type AuthSetup struct {
	Params     AuthParams
	RefreshKey []byte
	Key        SigningKey // KID and Secret; times are set in apply
}

// Validate checks a setup command in apply.
func (s *AuthSetup) Validate() error {
	if len(s.RefreshKey) != SecretBytes {
		return fmt.Errorf("refresh key must be %d bytes", SecretBytes)
	}
	if s.Params.SessionTTLms < 60_000 || s.Params.GraceMs < 0 || s.Params.GraceMs > 60_000 || s.Params.MaxSessions < 1 || s.Params.MaxSessions > 1000 {
		return fmt.Errorf("bad session parameters %+v", s.Params)
	}
	return s.Key.validate()
}

func (k *SigningKey) validate() error {
	if len(k.Secret) != SecretBytes {
		return fmt.Errorf("signing key must be %d bytes", SecretBytes)
	}
	if k.KID == "" || len(k.KID) > MaxKIDBytes {
		return fmt.Errorf("key id must be 1 to %d bytes", MaxKIDBytes)
	}
	for i := 0; i < len(k.KID); i++ {
		if c := k.KID[i]; !isAlnum(c) && c != '-' && c != '_' {
			return fmt.Errorf("key id %q has a character other than letters, digits, - and _", k.KID)
		}
	}
	return nil
}

// NewAuthState applies a setup at nowMs.
func NewAuthState(s *AuthSetup, nowMs int64) (*AuthState, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	k := s.Key
	k.CreatedMs, k.RetiredMs = nowMs, 0
	return &AuthState{Params: s.Params, RefreshKey: s.RefreshKey, Keys: []SigningKey{k}}, nil
}

// Rotate returns the state with k as the signing key: the current one is
// retired at nowMs, and keys retired more than KeyRetention ago are
// dropped.
func (a *AuthState) Rotate(k SigningKey, nowMs int64) (*AuthState, error) {
	if err := k.validate(); err != nil {
		return nil, err
	}
	if a.Key(k.KID) != nil {
		return nil, fmt.Errorf("key id %q is already in use", k.KID)
	}
	next := &AuthState{Params: a.Params, RefreshKey: a.RefreshKey}
	for _, old := range a.Keys {
		if old.RetiredMs == 0 {
			old.RetiredMs = nowMs
		}
		if nowMs-old.RetiredMs <= KeyRetention.Milliseconds() {
			next.Keys = append(next.Keys, old)
		}
	}
	if len(next.Keys) >= maxKeys {
		next.Keys = next.Keys[len(next.Keys)-maxKeys+1:]
	}
	k.CreatedMs, k.RetiredMs = nowMs, 0
	next.Keys = append(next.Keys, k)
	return next, nil
}

// Current is the key new tokens are signed with.
func (a *AuthState) Current() *SigningKey { return &a.Keys[len(a.Keys)-1] }

// Key returns the key with kid, or nil.
func (a *AuthState) Key(kid string) *SigningKey {
	for i := range a.Keys {
		if a.Keys[i].KID == kid {
			return &a.Keys[i]
		}
	}
	return nil
}

// Verifies reports whether k may verify a token issued at issuedMs: a
// retired key verifies only what it signed while it was current, give or
// take KeySkew (a node signs with the key it knows until it applies the
// rotation, by its own clock).
func (k *SigningKey) Verifies(issuedMs int64) bool {
	return k.RetiredMs == 0 || issuedMs <= k.RetiredMs+KeySkew.Milliseconds()
}
